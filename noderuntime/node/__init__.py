"""The running node: the daemon that composes store, runtime, reconciler, sync and API."""
