"""Who holds which document, where it is announced, and where a member's inbox is.

Pure decisions over the settings, the trust store, the peer table and the sovereign sites
learnt so far (no I/O):

- A node document belongs to the site its node is enrolled at: the trust store says, else the
  node's heartbeats did (a member may be known before its credential is).
- This node holds a document if its scopes include it (:func:`noderuntime.sync.acl.holds`),
  except a sovereign site's documents when it is not at that site.
- A sovereign site is learnt from its nodes' heartbeats (and is our own site if we are one).
"""

from __future__ import annotations

from noderuntime.identity.principals import node_id_of, node_principal
from noderuntime.sync import protocol
from noderuntime.sync.acl import DocKind, DocRef, MemberLike, Trust, doc_site, holds, parse_doc
from noderuntime.sync.peers import PeerStats, PeerTable
from noderuntime.sync.settings import SyncSettings


class Scopes:
    def __init__(self, settings: SyncSettings, trust: Trust, table: PeerTable) -> None:
        self.settings = settings
        self.trust = trust
        self.table = table
        self.sovereign_sites: set[str] = {settings.site} if settings.sovereign else set()

    def learn_sovereign(self, peer: PeerStats) -> None:
        if peer.sovereign and peer.site:
            self.sovereign_sites.add(peer.site)

    def is_sovereign(self, site: str | None) -> bool:
        return site is not None and site in self.sovereign_sites

    def site_of_node(self, node_id: str) -> str | None:
        if node_id == self.settings.node_id:
            return self.settings.site
        member = self.trust.member(node_principal(node_id))
        if member is not None and member.site:
            return member.site
        peer = self.table.get(node_id)
        return peer.site if peer else None

    def doc_site(self, doc: DocRef) -> str | None:
        return doc_site(doc, self.site_of_node(doc.ident) if doc.kind is DocKind.NODE else None)

    def may_hold(self, doc: DocRef) -> bool:
        """Whether this node holds (or, as a hub, may hold) ``doc``."""
        s = self.settings
        site = self.doc_site(doc)
        if not holds(doc, role=s.role, site=s.site, node_id=s.node_id, site_of_doc=site):
            return False
        return not (site is not None and site != s.site and site in self.sovereign_sites)

    def holders(self, doc: DocRef, now: float) -> list[PeerStats]:
        """Peers up now that hold ``doc`` and may be sent it."""
        site = self.doc_site(doc)
        out = []
        for p in self.table.peers.values():
            if not self.table.is_up(p, now) or p.role is None or p.site is None:
                continue
            if not holds(doc, role=p.role, site=p.site, node_id=p.node_id, site_of_doc=site):
                continue
            if site in self.sovereign_sites and p.site != site:
                continue
            out.append(p)
        return out

    def suffix(self, name: str) -> str | None:
        doc = parse_doc(name)
        if doc is None:
            return None
        site = self.site_of_node(doc.ident) if doc.kind is DocKind.NODE else None
        return protocol.doc_suffix(doc, site)

    def update_subject(self, name: str) -> str | None:
        suffix = self.suffix(name)
        return protocol.update_subject(self.settings.fleet, suffix) if suffix else None

    def state_subject(self, name: str) -> str | None:
        suffix = self.suffix(name)
        return protocol.state_subject(self.settings.fleet, suffix) if suffix else None

    def inbox_of(self, member: MemberLike) -> str | None:
        node = node_id_of(member.principal)
        peer = self.table.get(node) if node is not None else None
        site = member.site or (peer.site if peer is not None else None)
        if node is None or not site:
            return None
        return protocol.inbox_subject(self.settings.fleet, site, node)

    def inbox_of_node(self, node_id: str) -> str | None:
        member = self.trust.member(node_principal(node_id))
        return self.inbox_of(member) if member is not None else None
