"""Staged rollouts: revisions, waves, gates, update windows (pure; see docs/architecture.md)."""
