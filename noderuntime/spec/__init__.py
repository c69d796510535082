"""Workload specs: the YAML users write, validated into frozen models.

A workload file holds one or more ``---``-separated documents::

    apiVersion: noderuntime/v1
    kind: Workload
    metadata: {name: web, labels: {tier: edge}}
    spec:
      image: localhost/busybox:1
      command: ["httpd", "-f", "-p", "8080"]

Import from the module that holds a name; this package re-exports nothing.

- ``values``: constrained scalar types and their validators (names, labels, durations, memory).
- ``models``: the pydantic models, ``canonical_dict``, ``spec_hash`` and ``json_schema``.
- ``messages``: pydantic errors -> wire field paths and human messages.
- ``yamlindex``: YAML parsing, line index, duplicate keys, numbers kept as typed text.
- ``parse``: ``parse_workloads`` (YAML from a user) and ``workload_from_dict`` (stored JSON).

The container a workload becomes is built in ``noderuntime.reconcile.container_spec``.
"""
