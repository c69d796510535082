"""The console at a site with no network: images (load from a stick), network, fleet join and a
history a technician can read. Pilot tests and 80x24 snapshots over a fake API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fake_api import NOW, PIN, TECHNICIAN, FakeApi, clock, events, history
from test_snapshots import FROZEN_REFRESH_S, keys
from textual.widgets import Input
from tui_helpers import screen_text, settle, wait_until

from noderuntime.errors import ApiError
from tui.app import NodeRuntimeApp
from tui.screens.imageload import LoadImageScreen

ARCHIVE = "/media/usb0/images/hmi-web-2.4.tar"


def images() -> list[dict[str, Any]]:
    return [
        {
            "id": "956d2629c475",
            "names": ["localhost/busybox:1"],
            "size_bytes": 2_129_696,
            "created": NOW - 86400,
            "present": True,
            "workloads": ["plc-bridge", "historian", "mqtt"],
        },
        {
            "id": "",
            "names": ["registry.example/hmi-web:2.4"],
            "size_bytes": 0,
            "created": None,
            "present": False,
            "workloads": ["hmi-web"],
        },
    ]


def network() -> dict[str, Any]:
    return {
        "links": [
            {
                "name": "eth0",
                "index": 2,
                "state": "up",
                "mac": "52:54:00:12:34:56",
                "addresses": ["192.168.7.20/24"],
                "manager": None,
            },
            {"name": "wlan0", "index": 3, "state": "down", "mac": "", "addresses": []},
        ],
        "gateway": "192.168.7.1",
        "gateway_link": "eth0",
        "dns": ["192.168.7.1"],
        "manager": None,
        "can_set": False,
        "why_not": "not managed by systemd-networkd or NetworkManager",
    }


def enrolment() -> dict[str, Any]:
    return {
        "enrolled": True,
        "node": "edge-07",
        "site": "plant-north",
        "public_key": "q1w2e3",
        "fleet_id": "fleet-3f9a",
        "problem": None,
        "sync": {"connected": False, "nats_url": "nats://127.0.0.1:4222"},
        "links": [
            {
                "peer": "nats-leaf://hub.plant:7422",
                "direction": "outbound",
                "up": False,
                "error": "hub.plant:7422: No route to host",
            }
        ],
        "peers": [{"node": "hub-1", "up": False}],
    }


def history_entries(with_status: bool) -> list[dict[str, Any]]:
    out = [
        *history(),
        {
            "seq": 1835,
            "doc": "node/edge-07",
            "author": "node:edge-07",
            "on_behalf": None,
            "summary": "node info (version 0.9.0)",
            "ts": NOW - 30,
            "size_bytes": 60,
        },
    ]
    if with_status:
        out.append(
            {
                "seq": 1836,
                "doc": "node/edge-07",
                "author": "node:edge-07",
                "on_behalf": None,
                "summary": "status modbus-poller Failed",
                "ts": NOW - 10,
                "size_bytes": 70,
            }
        )
    return sorted(out, key=lambda e: -e["ts"])


class OfflineApi(FakeApi):
    """The fake node, plus the routes of the offline screens."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.loaded = False

    def _auth_ok(self, params: dict[str, Any]) -> None:
        auth = params.get("auth") or {}
        if auth.get("technician") != TECHNICIAN or auth.get("pin") != PIN:
            raise ApiError(
                "wrong PIN; technician 'alice' is now locked out for 300s",
                code="permission_denied",
            )

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        if method == "images.list":
            self.calls.append((method, dict(params or {})))
            found = images()
            if self.loaded:
                found[1].update(id="1f2e3d4c5b6a", present=True, size_bytes=48_000_000)
            return found
        if method == "images.archives":
            self.calls.append((method, dict(params or {})))
            return [
                {"path": ARCHIVE, "size_bytes": 48_000_000},
                {"path": "/mnt/service/busybox.tar", "size_bytes": 2_200_000},
            ]
        if method == "network.get":
            return network()
        if method == "enrolment.status":
            return enrolment()
        if method == "network.set":
            self.calls.append((method, dict(params or {})))
            self._auth_ok(dict(params or {}))
            raise ApiError(
                "eth0: this node's network is not managed by systemd-networkd or "
                "NetworkManager, so noderuntime does not change it",
                code="network_config",
            )
        if method == "history.list":
            self.calls.append((method, dict(params or {})))
            return history_entries(bool((params or {}).get("status")))
        if method == "events.list":
            self.calls.append((method, dict(params or {})))
            return [
                *events(),
                {
                    "ts": NOW - 100,
                    "workload": "modbus-poller",
                    "kind": "restarted",
                    "message": "restarted by technician:alice",
                },
            ]
        return await super().call(method, params)

    async def stream(self, method: str, params: dict[str, Any] | None = None) -> AsyncIterator[Any]:
        if method != "images.load":
            async for item in super().stream(method, params):
                yield item
            return
        params = dict(params or {})
        self.calls.append((method, params))
        self._auth_ok(params)
        total = 48_000_000
        yield {"phase": "verifying", "path": params["path"], "total_bytes": total}
        for sent in (0, total // 2):
            yield {"phase": "loading", "sent_bytes": sent, "total_bytes": total}
        self.loaded = True
        yield {
            "phase": "loaded",
            "names": ["registry.example/hmi-web:2.4"],
            "workloads": ["hmi-web"],
            "by": "technician:alice",
            "sent_bytes": total,
            "total_bytes": total,
        }


def make_app(api: FakeApi | None = None, view: str = "images") -> NodeRuntimeApp:
    return NodeRuntimeApp(
        api or OfflineApi(), clock=clock, refresh_interval_s=FROZEN_REFRESH_S, initial_view=view
    )


def test_images_view(snap_compare: Any) -> None:
    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=keys())


def test_load_image_dialog(snap_compare: Any) -> None:
    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=keys("l"))


async def test_an_image_is_loaded_from_a_stick_with_a_pin_and_the_list_refreshes() -> None:
    api = OfflineApi()
    app = make_app(api)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert "MISSING" in screen_text(pilot) and "press l to load" in screen_text(pilot)
        await pilot.press("l")
        await wait_until(pilot, lambda: isinstance(app.screen, LoadImageScreen), what="dialog")
        await wait_until(pilot, lambda: app.screen.has_class("-loaded"), what="archives")
        assert app.screen.query_one("#archive-path", Input).value == ARCHIVE
        await pilot.press("enter")  # picks the highlighted archive, on to the name
        await pilot.press(*TECHNICIAN, "enter", *"1111", "enter")
        await wait_until(pilot, lambda: "locked out" in screen_text(pilot), what="refusal")
        assert isinstance(app.screen, LoadImageScreen)  # still open, PIN cleared
        assert app.screen.query_one("#pin", Input).value == ""
        app.screen.query_one("#pin", Input).focus()
        await pilot.press(*PIN, "enter")
        await wait_until(
            pilot, lambda: not isinstance(app.screen, LoadImageScreen), what="dialog closed"
        )
        loads = [p for m, p in api.calls if m == "images.load"]
        assert [p["path"] for p in loads] == [ARCHIVE, ARCHIVE]
        assert loads[-1]["auth"] == {"technician": TECHNICIAN, "pin": PIN}
        await wait_until(pilot, lambda: "MISSING" not in screen_text(pilot), what="refresh")
        assert "Starting now: hmi-web" in " ".join(str(n.message) for n in app._notifications)


def test_history_view(snap_compare: Any) -> None:
    assert snap_compare(make_app(view="history"), terminal_size=(80, 24), run_before=keys())


async def test_history_puts_people_first_and_shows_status_writes_on_request() -> None:
    api = OfflineApi()
    app = make_app(api, view="history")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        lines = screen_text(pilot).splitlines()
        people = [i for i, line in enumerate(lines) if "technician:alice" in line]
        ops = [i for i, line in enumerate(lines) if "operator:maria" in line]
        nodes = [i for i, line in enumerate(lines) if "node info" in line]
        assert people and ops and nodes and max(people + ops) < min(nodes)
        assert "status modbus-poller" not in screen_text(pilot)
        await pilot.press("a")
        await wait_until(
            pilot, lambda: "status modbus-poller" in screen_text(pilot), what="status writes"
        )
        assert [p.get("status") for m, p in api.calls if m == "history.list"][-1] is True


def test_network_and_fleet_view(snap_compare: Any) -> None:
    assert snap_compare(make_app(view="link"), terminal_size=(80, 24), run_before=keys())


async def test_a_network_change_where_no_manager_owns_it_is_refused_with_the_reason() -> None:
    api = OfflineApi()
    app = make_app(api, view="link")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        text = screen_text(pilot)
        assert "eth0: UP  192.168.7.20/24" in text and "No route to host" in text
        await pilot.press("s")
        await wait_until(pilot, lambda: app.screen.query("#netset-box"), what="dialog")
        assert app.screen.query_one("#address", Input).value == "192.168.7.20/24"
        app.screen.query_one("#technician", Input).value = TECHNICIAN
        app.screen.query_one("#pin", Input).value = PIN
        app.screen.query_one("#pin", Input).focus()
        await pilot.press("enter")
        await wait_until(
            pilot, lambda: "does not change it" in screen_text(pilot), what="the refusal"
        )
        sent = [p for m, p in api.calls if m == "network.set"]
        assert sent[-1]["name"] == "eth0" and sent[-1]["mode"] == "static"
        assert sent[-1]["auth"] == {"technician": TECHNICIAN, "pin": PIN}
