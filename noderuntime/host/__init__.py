"""The host under the node: Podman set-up, `doctor`, backup and restore of the data dir."""
