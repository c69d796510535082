"""Malformed files for every command that reads one (issue 9, section 7).

Each is something a person or a broken tool really hands a command: another encoding, a binary,
nothing at all, YAML that expands or nests without bound, a file far too large. Every command
must answer each with a clear error and exit code 2, never a traceback.
"""

from __future__ import annotations


def _billion_laughs() -> bytes:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    prev = "a"
    for name in "bcdefghi":
        lines.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]")
        prev = name
    return ("\n".join(lines) + "\n").encode()


def _deep_block(levels: int) -> bytes:
    return "".join("  " * i + f"k{i}:\n" for i in range(levels)).encode() + b"  " * levels + b"1\n"


WORKLOAD_HEAD = b"apiVersion: noderuntime/v1\nkind: Workload\nmetadata: {name: w}\n"

CORPUS: dict[str, bytes] = {
    "latin-1": WORKLOAD_HEAD.replace(b"{name: w}", b"{name: caf\xe9}"),
    "utf-16": WORKLOAD_HEAD.decode().encode("utf-16"),
    "binary": bytes(range(256)) * 16,
    "gzip": bytes.fromhex("1f8b0800000000000003") + bytes(range(200)),
    "nul bytes": WORKLOAD_HEAD + b"\x00\x00\x00\n",
    "empty": b"",
    "only a comment": b"# nothing here\n",
    "billion laughs": _billion_laughs(),
    "self-referencing alias": WORKLOAD_HEAD + b"spec:\n  image: x\n  env: &e {A: *e}\n",
    "unclosed flow, deep": b"[" * 100_000,
    "closed flow, deep": b"[" * 5_000 + b"]" * 5_000,
    "flow mappings, deep": b"{a: " * 5_000 + b"1" + b"}" * 5_000,
    "block mappings, deep": _deep_block(200),
    "syntax error": b"key: [unclosed\n",
    "a list": b"- 1\n- 2\n",
    "a scalar": b"42\n",
    "many empty documents": b"---\n" * 50_000,
    "a 2 MiB line": b"# " + b"a" * (2 * 1024 * 1024) + b"\n",
}


def is_utf8(blob: bytes) -> bool:
    try:
        blob.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
