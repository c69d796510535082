"""CLI commands for fleet identity: ``fleet init|enroll|add-operator|show``, ``enroll``, and the
enrolment options of ``init``. Hooked into :func:`noderuntime.cli.main.build_parser`.

Which enrolment path to use:

* **offline (token)** - ``fleet enroll NODE --site S --dir FLEETDIR -o TOKEN`` makes a key for
  the node and puts it in the token with the credential and TLS certificate; carry the token
  to the site and run ``noderuntime init --node-id NODE --site S --enroll TOKEN``. The token
  is a SECRET (it holds the node's private key): it is written 0600; delete it once used.
* **online (credential)** - the node keeps a key it made itself (``noderuntime init`` without
  ``--enroll``). Print it with ``noderuntime enroll --show-public-key``, have it signed with
  ``fleet enroll NODE --site S --public-key KEY --dir FLEETDIR -o CREDFILE`` (no secret in it),
  and install it with ``noderuntime enroll --credential CREDFILE``. Use this when a private
  key must never leave the appliance.
"""

from __future__ import annotations

import argparse
import getpass
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from noderuntime.identity.principals import node_principal, operator_principal

# Heavy imports (cryptography) happen inside the commands: the CLI must start fast.
if TYPE_CHECKING:
    from noderuntime.fleet.bundle import EnrollmentBundle
    from noderuntime.identity.keys import Identity

AS_ENV = "NODERUNTIME_AS"  # same as noderuntime.fleet.authority.AS_ENV
EXIT_OK = 0


def _path(value: str) -> Path:
    return Path(value).expanduser().absolute()


# --- `noderuntime fleet ...` (run by the holder of the fleet root) ----------------------------


def cmd_fleet_init(args: argparse.Namespace) -> int:
    from noderuntime.fleet.authority import FleetAuthority

    name = args.operator or getpass.getuser()
    auth = FleetAuthority.init(_path(args.dir), name)
    print(f"created fleet {auth.fleet_id} in {auth.dir}")
    print(f"  root key  {auth.dir / 'root.key'} (0600): keep it offline and backed up")
    print(
        f"  operator  {operator_principal(name)}; sign changes with `--as {auth.dir}` or {AS_ENV}"
    )
    print(f"enrol nodes with `noderuntime fleet enroll NODE_ID --site SITE --dir {auth.dir} -o T`")
    return EXIT_OK


def cmd_fleet_enroll(args: argparse.Namespace) -> int:
    from noderuntime.errors import FleetError
    from noderuntime.fleet.authority import FleetAuthority, parse_public_key, write_bundle
    from noderuntime.fleet.credential import MemberRole

    auth = FleetAuthority.open(_path(args.dir))
    public_key = parse_public_key(args.public_key) if args.public_key else None
    out = _path(args.output)
    if out.exists():
        raise FleetError(f"{out} already exists; refusing to overwrite it")
    bundle = auth.enroll_node(
        args.node_id,
        args.site,
        role=MemberRole(args.role),
        public_key=public_key,
        addresses=tuple(args.address or ()),
        valid_days=args.valid_days,
    )
    write_bundle(out, bundle)
    what = f"{args.role} {args.node_id} (site {args.site}) in {auth.fleet_id}"
    if bundle.is_token:
        print(f"enrolment token for {what} written to {out}")
        print("  it holds the node's PRIVATE key: keep it secret (0600), delete it once used")
        print(f"  on the node: noderuntime init --node-id {args.node_id} --site {args.site} ")
        print(f"    --enroll {out.name}" + (" --role hub" if args.role == "hub" else ""))
    else:
        print(f"credential for {what} written to {out}")
        print(f"  on the node: noderuntime enroll --credential {out.name}")
    return EXIT_OK


def cmd_fleet_add_operator(args: argparse.Namespace) -> int:
    from noderuntime.fleet.authority import FleetAuthority

    auth = FleetAuthority.open(_path(args.dir))
    target, _ = auth.add_operator(args.name, _path(args.output) if args.output else None)
    print(f"{operator_principal(args.name)} enrolled in {auth.fleet_id}; profile in {target}")
    print("  it holds the operator's PRIVATE key: hand it over securely")
    print(f"  sign changes with `noderuntime --as {target} apply -f FILE` (or {AS_ENV}={target})")
    return EXIT_OK


def cmd_fleet_show(args: argparse.Namespace) -> int:
    from noderuntime.fleet.authority import ISSUED_DIR, FleetInfo
    from noderuntime.fleet.credential import b64u, decode_credential

    d = _path(args.dir)
    info = FleetInfo.read(d)
    print(f"fleet {info.fleet_id}")
    print(f"root key {b64u(info.root_public_key)}")
    issued = d / ISSUED_DIR
    if not issued.is_dir():
        return EXIT_OK
    creds = [decode_credential(p.read_bytes())[0] for p in issued.glob("*.cred")]
    for cred in sorted(creds, key=lambda c: c.serial):
        site = f" site {cred.site}" if cred.site else ""
        print(f"  #{cred.serial:<4} {cred.principal:<24} {cred.role.value:<8}{site}  {cred.key_id}")
    return EXIT_OK


# --- `noderuntime enroll` (run on the node) ---------------------------------------------------


def cmd_enroll(args: argparse.Namespace) -> int:
    from noderuntime.cli.common import _config_file, _data_dir
    from noderuntime.config.model import load_config
    from noderuntime.errors import EnrollmentError
    from noderuntime.fleet.bundle import read_bundle
    from noderuntime.fleet.credential import MemberRole
    from noderuntime.fleet.trust import install_bundle, show_public_key
    from noderuntime.identity import keys as identity

    data_dir = _data_dir(args)
    config = load_config(data_dir, _config_file(args))
    if args.show_public_key:
        print(show_public_key(data_dir))
        return EXIT_OK
    if args.member:
        import asyncio

        from noderuntime.api.client import ApiClient
        from noderuntime.config.model import NodePaths

        blob = read_bundle(_path(args.member)).credential_blob.decode()

        async def add() -> Any:
            async with ApiClient(NodePaths(data_dir, config).api_socket) as client:
                return await client.call("fleet.member.add", {"credential": blob})

        r = asyncio.run(add())
        print(f"{r['principal']} ({r['role']}, key {r['key_id']}) is known to this node")
        return EXIT_OK
    if not args.credential:
        raise EnrollmentError("give --credential FILE (or --show-public-key)")
    bundle = read_bundle(_path(args.credential))
    if bundle.is_token:
        raise EnrollmentError(
            "that is an enrolment token, which carries its own key: use it when creating the "
            "node (`noderuntime init --enroll TOKEN`); for this existing node, issue a "
            "credential with `fleet enroll ... --public-key KEY`"
        )
    ident = identity.load_key(data_dir / "identity.key", node_principal(config.node_id))
    trust = install_bundle(
        data_dir,
        bundle,
        node_id=config.node_id,
        site=config.site,
        node_public_key=ident.public_bytes,
        role=MemberRole(config.role.value),
    )
    print(f"node {config.node_id} enrolled in {trust.fleet_id}; restart the node to link up")
    return EXIT_OK


# --- `noderuntime init --enroll TOKEN ...` ----------------------------------------------------


@dataclass
class InitEnrollment:
    """What ``init`` needs from its fleet options, checked before anything is written."""

    bundle: EnrollmentBundle | None

    def identity(self) -> Identity | None:
        return self.bundle.node_identity() if self.bundle else None

    def install(self, data_dir: Path, node_id: str, site: str) -> str | None:
        from noderuntime.fleet.trust import install_bundle

        if self.bundle is None:
            return None
        trust = install_bundle(
            data_dir,
            self.bundle,
            node_id=node_id,
            site=site,
            node_public_key=self.bundle.credential.public_key,
        )
        return trust.fleet_id


def prepare_init_enrollment(args: argparse.Namespace) -> InitEnrollment:
    """Read and check ``--enroll TOKEN`` against ``--node-id/--site/--role`` (writes nothing)."""
    from noderuntime.errors import EnrollmentError
    from noderuntime.fleet.bundle import read_bundle
    from noderuntime.fleet.credential import MemberRole

    if not getattr(args, "enroll", None):
        return InitEnrollment(None)
    bundle = read_bundle(_path(args.enroll))
    if not bundle.is_token:
        raise EnrollmentError(
            f"{args.enroll} is a credential file, not a token: run `noderuntime init` without "
            "--enroll, then `noderuntime enroll --credential FILE`"
        )
    cred = bundle.credential
    if cred.principal != node_principal(args.node_id):
        raise EnrollmentError(
            f"{args.enroll} enrols {cred.principal}, not {node_principal(args.node_id)}; use "
            f"the token made for this node, or --node-id {cred.name}"
        )
    if cred.site != args.site:
        raise EnrollmentError(
            f"{args.enroll} enrols node {cred.name} at site {cred.site}, not {args.site}"
        )
    # A witness is a node that runs no workloads: it is enrolled as one.
    if cred.role.value != ("node" if args.role == "witness" else args.role):
        raise EnrollmentError(
            f"{args.enroll} enrols a {cred.role.value}; add --role {cred.role.value}"
            if cred.role is MemberRole.HUB
            else f"{args.enroll} enrols a {cred.role.value}, not a {args.role}"
        )
    return InitEnrollment(bundle)


def init_config_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """NodeConfig fields from init's transport options (only those given)."""
    out: dict[str, Any] = {}
    if getattr(args, "nats_port", None) is not None:
        out["nats_port"] = args.nats_port
    if getattr(args, "leaf_port", None) is not None:
        out["leaf_port"] = args.leaf_port
    if getattr(args, "leaf_host", None):
        out["leaf_host"] = args.leaf_host
    if getattr(args, "peer", None):
        out["peers"] = list(args.peer)
    if getattr(args, "site_peer", None):
        out["site_peers"] = list(args.site_peer)
    if getattr(args, "cluster_port", None) is not None:
        out["cluster_port"] = args.cluster_port
    if getattr(args, "cluster_peer", None):
        out["cluster_peers"] = list(args.cluster_peer)
    if getattr(args, "nats_url", None):
        out["nats_url"] = args.nats_url
    if getattr(args, "sovereign", False):
        out["sovereign"] = True
    return out


# --- operator signing -------------------------------------------------------------------------


def operator_from_args(args: argparse.Namespace) -> tuple[Identity, bytes] | None:
    """(operator identity, credential blob) chosen by ``--as DIR`` or $NODERUNTIME_AS, or None."""
    from noderuntime.fleet.authority import load_operator, resolve_operator_dir

    d = resolve_operator_dir(getattr(args, "as_operator", None))
    return load_operator(d) if d else None


# --- parser -----------------------------------------------------------------------------------


def add_global_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--as",
        dest="as_operator",
        metavar="FLEETDIR",
        help=f"sign changes as the operator in this fleet/operator directory (env {AS_ENV})",
    )


def add_init_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument(
        "--enroll", metavar="TOKENFILE", help="install a fleet enrolment token (offline path)"
    )
    s.add_argument("--nats-port", type=int, help="local NATS client port (127.0.0.1; default 4222)")
    s.add_argument("--leaf-port", type=int, help="accept leaf-node links from peers on this port")
    s.add_argument("--leaf-host", help="address for the leaf-node port (default 0.0.0.0)")
    s.add_argument(
        "--peer",
        action="append",
        metavar="nats-leaf://HOST:PORT",
        help="link to this peer or hub (repeatable)",
    )
    s.add_argument(
        "--site-peer",
        action="append",
        metavar="nats-leaf://HOST:PORT",
        help="link to this peer inside the site (a sovereign site's docs cross only these links)",
    )
    s.add_argument(
        "--cluster-port",
        type=int,
        help="cluster this node's nats-server with its site's on this port (JetStream, leases)",
    )
    s.add_argument(
        "--cluster-peer",
        action="append",
        metavar="nats-route://HOST:PORT",
        help="another member of this site's cluster (repeatable)",
    )
    s.add_argument("--nats-url", help="use this existing NATS instead of starting nats-server")
    s.add_argument("--sovereign", action="store_true", help="keep this site's docs inside the site")


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = sub.add_parser("fleet", help="fleet identity: trust anchor, enrolment, operators")
    fsub = s.add_subparsers(dest="fleet_cmd", required=True)

    f = fsub.add_parser("init", help="create a fleet root key, CA and your operator identity")
    f.add_argument("--dir", required=True, help="fleet directory to create (holds the root key)")
    f.add_argument("--operator", help="your operator name (default: your login name)")
    f.set_defaults(func=cmd_fleet_init)

    f = fsub.add_parser("enroll", help="enrol a node or hub: a token (offline) or credential")
    f.add_argument("node_id", metavar="NODE_ID")
    f.add_argument("--site", required=True)
    f.add_argument("--role", choices=["node", "hub"], default="node")
    f.add_argument("--dir", required=True, help="the fleet directory")
    f.add_argument("-o", "--output", required=True, help="token or credential file to write")
    f.add_argument(
        "--public-key",
        metavar="KEY_OR_FILE",
        help="online path: sign a credential for the node's own key (no secret in the output)",
    )
    f.add_argument(
        "--address",
        action="append",
        metavar="HOST",
        help="IP or DNS name peers use to reach this node's leaf port (repeatable)",
    )
    f.add_argument("--valid-days", type=float, help="credential expiry (default: none)")
    f.set_defaults(func=cmd_fleet_enroll)

    f = fsub.add_parser("add-operator", help="enrol another operator (a new key and profile)")
    f.add_argument("name", metavar="NAME")
    f.add_argument("--dir", required=True, help="the fleet directory")
    f.add_argument("-o", "--output", help="profile directory (default FLEETDIR/operators/NAME)")
    f.set_defaults(func=cmd_fleet_add_operator)

    f = fsub.add_parser("show", help="print the fleet id and issued credentials")
    f.add_argument("--dir", required=True, help="a fleet or operator directory")
    f.set_defaults(func=cmd_fleet_show)

    s = sub.add_parser("enroll", help="install a fleet credential on this node (online path)")
    s.add_argument("--credential", metavar="CREDFILE", help="credential file from `fleet enroll`")
    s.add_argument(
        "--member",
        metavar="FILE",
        help="teach the running node another member's credential (a credential file or token "
        "of it; only the public credential is sent): how a member enrolled after a revocation "
        "gets past this node's pinned certificates",
    )
    s.add_argument(
        "--show-public-key", action="store_true", help="print this node's public key and exit"
    )
    s.set_defaults(func=cmd_enroll)


def is_enrolled(data_dir: Path) -> bool:
    from noderuntime.fleet.trust import FleetTrust

    return FleetTrust.is_enrolled(data_dir)


__all__ = [
    "add_global_arguments",
    "add_init_arguments",
    "add_parsers",
    "init_config_kwargs",
    "operator_from_args",
    "prepare_init_enrollment",
]
