"""Technicians known to this node: PIN hashes, checks and lock-out.

A technician at the console proves who they are with a PIN before a state-changing action; the
node then signs the change on their behalf and records their name with it. PINs are stored as
scrypt hashes in ``<data_dir>/technicians.json`` (mode 0600) and checked by the daemon only.
Repeated failures lock the technician out for a growing period.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from noderuntime import codec
from noderuntime.errors import ConfigError, LockedOutError, PermissionDeniedError
from noderuntime.identity.principals import technician_principal

TECHNICIANS_FILE = "technicians.json"
MIN_PIN_LENGTH = 4
MAX_FAILURES = 5
LOCKOUT_S = 300.0
LOCKOUT_MAX_S = 3600.0
# What a locked-out technician can do (said at the console: no root command in it).
LOCKED_OUT_HELP = (
    "You can still look at everything. Try again after that with the right PIN, or ask "
    "another technician to make the change; if the PIN is forgotten, whoever looks after "
    "this node's technicians can set a new one."
)
# Names that are no technician's whose failed tries are counted (in memory, newest kept).
MAX_UNKNOWN_NAMES = 1024
# scrypt cost: ~50 ms here, slow enough to make guessing a 4-digit PIN from a stolen file cost
# minutes rather than microseconds, fast enough for a person at a console.
_SCRYPT_N = 2**14
_SCRYPT_R = 8
_SCRYPT_P = 1
_REPAIR = "remove it and add the technicians again with `noderuntime technician add`"
_NAME_RE = re.compile(r"^[a-z0-9][-a-z0-9_.]{0,31}\Z")


@dataclass
class TechnicianRecord:
    name: str
    salt: str
    hash: str
    failures: int = 0
    locked_until: float = 0.0
    lockouts: int = 0


# A PIN hash as carried in a provisioning file or `init --technician`: the scheme names its
# parameters, so a later change of cost can still read entries made today.
PIN_HASH_SCHEME = "scrypt-n14r8p1"
_PIN_HASH_RE = re.compile(rf"^{PIN_HASH_SCHEME}\$([0-9a-f]{{32}})\$([0-9a-f]{{64}})\Z")


def _hash(pin: str, salt: bytes) -> str:
    return hashlib.scrypt(
        pin.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32
    ).hex()


def _check_name(name: str) -> None:
    if not _NAME_RE.match(name):
        raise ConfigError(
            f"invalid technician name {name!r}: 1-32 lowercase letters, digits, '-', '_', '.'"
        )


def _check_pin(pin: str) -> None:
    if len(pin) < MIN_PIN_LENGTH or not pin.strip():
        raise ConfigError(f"a PIN needs at least {MIN_PIN_LENGTH} characters")


def hash_pin(pin: str) -> str:
    """A self-describing PIN hash (``scheme$salt$hash``) to provision a technician with.

    An appliance builder puts this, not the PIN, on the image or USB stick: the node never
    needs to see the PIN itself until the technician types it at the console.
    """
    _check_pin(pin)
    salt = secrets.token_bytes(16)
    return f"{PIN_HASH_SCHEME}${salt.hex()}${_hash(pin, salt)}"


def parse_technician_arg(text: str) -> tuple[str, str, str]:
    """``NAME=PINHASH`` -> (name, salt hex, hash hex); raises ConfigError naming the problem."""
    name, sep, entry = text.partition("=")
    if not sep:
        raise ConfigError(
            f"--technician {text!r}: expected NAME=PINHASH (make the hash with "
            "`noderuntime technician hash`)"
        )
    _check_name(name)
    m = _PIN_HASH_RE.match(entry)
    if m is None:
        raise ConfigError(
            f"--technician {name}: not a PIN hash made by `noderuntime technician hash` "
            f"(expected {PIN_HASH_SCHEME}$<32 hex>$<64 hex>)"
        )
    return name, m.group(1), m.group(2)


class TechnicianStore:
    def __init__(self, data_dir: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = data_dir / TECHNICIANS_FILE
        self._clock = clock
        self._unknown: OrderedDict[str, TechnicianRecord] = OrderedDict()

    def _load(self) -> dict[str, TechnicianRecord]:
        try:
            raw = codec.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise ConfigError(f"cannot read {self.path}: {exc.strerror}") from exc
        except codec.DecodeError as exc:
            raise ConfigError(f"{self.path} is damaged ({exc}); {_REPAIR}") from exc
        if not isinstance(raw, dict):
            raise ConfigError(f"{self.path} is damaged (not a JSON object); {_REPAIR}")
        try:
            records = {name: TechnicianRecord(**rec) for name, rec in raw.items()}
        except TypeError as exc:
            raise ConfigError(f"{self.path} is damaged ({exc}); {_REPAIR}") from exc
        for name, rec in records.items():
            if not (
                isinstance(rec.salt, str)
                and isinstance(rec.hash, str)
                and all(isinstance(v, int | float) for v in (rec.failures, rec.locked_until))
                and isinstance(rec.lockouts, int)
            ):
                raise ConfigError(f"{self.path} is damaged (entry {name!r}); {_REPAIR}")
        return records

    def _save(self, records: dict[str, TechnicianRecord]) -> None:
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({n: asdict(r) for n, r in records.items()}, fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    def names(self) -> list[str]:
        return sorted(self._load())

    def add(self, name: str, pin: str, *, replace: bool = False) -> None:
        _check_name(name)
        _check_pin(pin)
        salt = secrets.token_bytes(16)
        self.add_hashed([(name, salt.hex(), _hash(pin, salt))], replace=replace)

    def add_hashed(self, entries: list[tuple[str, str, str]], *, replace: bool = False) -> None:
        """Add technicians from :func:`parse_technician_arg` results, all or none."""
        names = [name for name, _, _ in entries]
        if len(set(names)) != len(names):
            raise ConfigError(f"a technician is named twice in {', '.join(names)}")
        records = self._load()
        for name in names:
            if name in records and not replace:
                raise ConfigError(f"technician {name!r} exists; use --replace to set a new PIN")
        for name, salt, digest in entries:
            records[name] = TechnicianRecord(name=name, salt=salt, hash=digest)
        self._save(records)

    def remove(self, name: str) -> bool:
        records = self._load()
        if records.pop(name, None) is None:
            return False
        self._save(records)
        return True

    def verify(self, name: str, pin: str) -> str:
        """Return the technician's principal, or raise PermissionDeniedError.

        A name that is not a technician's takes the same path as a real one with a wrong PIN:
        one scrypt hash (against a record that never matches), the same counting, lock-out and
        messages, one write of the file (unchanged). Neither time nor answers tell a guesser
        which names exist. Its counts are kept in memory, for the most recent
        ``MAX_UNKNOWN_NAMES`` names only, so guessing names grows nothing without bound.
        """
        records = self._load()
        known = records.get(name)
        rec = known if known is not None else self._unknown_record(name)
        now = self._clock()
        if rec.locked_until > now:
            raise LockedOutError(
                f"technician {name!r} is locked out for {wait_text(rec.locked_until - now)} more "
                f"after {MAX_FAILURES} wrong PINs. {LOCKED_OUT_HELP}"
            )
        matches = hmac.compare_digest(_hash(pin, bytes.fromhex(rec.salt)), rec.hash)
        if matches and known is not None:
            if rec.failures or rec.lockouts:
                rec.failures = 0
                rec.lockouts = 0
                self._save(records)
            return technician_principal(name)
        rec.failures += 1
        left = MAX_FAILURES - rec.failures
        if rec.failures >= MAX_FAILURES:
            rec.lockouts += 1
            rec.failures = 0
            rec.locked_until = now + min(LOCKOUT_MAX_S, LOCKOUT_S * 2 ** (rec.lockouts - 1))
            if records:
                self._save(records)
            raise LockedOutError(
                f"wrong PIN; technician {name!r} is now locked out for "
                f"{wait_text(rec.locked_until - now)}. {LOCKED_OUT_HELP}"
            )
        if records:  # with no technician at all there is no name to hide, and no file to touch
            self._save(records)
        raise PermissionDeniedError(f"unknown technician or wrong PIN ({left} tries left)")

    def _unknown_record(self, name: str) -> TechnicianRecord:
        """The in-memory stand-in for a name that is no technician's (least recently used go)."""
        rec = self._unknown.pop(name, None)
        if rec is None:
            # A random hash no PIN produces; its salt is hashed like a real one.
            rec = TechnicianRecord(
                name=name, salt=secrets.token_hex(16), hash=secrets.token_hex(32)
            )
        self._unknown[name] = rec
        while len(self._unknown) > MAX_UNKNOWN_NAMES:
            self._unknown.popitem(last=False)
        return rec


def wait_text(seconds: float) -> str:
    """``5 min``, ``4 min 47 s``, ``45 s``: how long a technician waits, for people."""
    total = max(1, round(seconds))
    minutes, secs = divmod(total, 60)
    if not minutes:
        return f"{secs} s"
    return f"{minutes} min" + (f" {secs} s" if secs else "")
