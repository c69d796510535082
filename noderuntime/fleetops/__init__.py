"""Fleet operations: what runs where (views over the synced status documents a hub holds)."""
