"""The `noderuntime` command line: a client of the control API plus offline commands."""
