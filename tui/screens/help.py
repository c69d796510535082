"""Key bindings, for every view, on one page (``?``)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

HELP_TEXT = """\
[b]Views[/b]  (also [b]:[/b] then a name, like k9s)
  1  overview   2  workloads   3  peers/sync   4  events   5  fleet (a hub)
  :overview  :workloads (:wl)  :peers (:sync)  :events (:ev)  :fleet  :help  :quit

[b]Everywhere[/b]
  ?  this help     :  jump to a view     Esc  back     q  quit

[b]Workloads[/b]
  /  filter (words must all match; phase=failed, !stop)   Enter/d  describe
  l  logs     r  restart     s  stop     t  start
  o  set a node override (env.NAME, image, enabled, ...)

[b]Workload detail[/b]
  l  logs   r/s/t  restart/stop/start   o  set override   x  remove override of
  the selected field (only fields FROM node can be removed here)

[b]Logs[/b]
  f  follow on/off   p/Space  pause/resume   /  search   n/N  next/previous match
  g/G  top/bottom   arrows, PgUp/PgDn  scroll back

[b]Changing things[/b]
  Restart, stop, start and overrides ask for confirmation and your technician
  name and PIN. The change is signed by this node for you, recorded in the
  history (view 4) and synced. Wrong PINs lock you out after 5 tries.
  A change that a fleet policy forbids is refused with the reason.
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,question_mark,q", "close", "Close"),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Static(HELP_TEXT, id="help-text")

    def action_close(self) -> None:
        self.dismiss(None)
