"""Who acts: the node's Ed25519 key, principal names, technicians and their PINs."""
