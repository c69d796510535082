"""Key bindings, for every view, on one page (``?``)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

# Every line fits the box at 80 columns (72 characters inside it): an entry never wraps into
# the next one. Longer explanations go on lines of their own.
HELP_TEXT = """\
[b]Views[/b]  (also [b]:[/b] then a name, like k9s)
  1 overview  2 workloads  3 peers/sync  4 events  5 fleet (a hub)
  :overview  :workloads (:wl)  :peers (:sync)  :events (:ev)  :fleet
  6 images  7 audit  8 history  9 network and fleet (no network needed)
  6: l loads an image archive from a stick   8: a shows status writes
  9: s sets the network, j joins a fleet (a credential from a stick)

[b]Everywhere[/b]
  ?  this help        :  jump to a view       Esc  back       q  quit

[b]Overview[/b]   problems first: what is not healthy, and why
  up/down  choose a problem     Enter  open that workload

[b]Workloads[/b]   problems first; N toggles name order
  Enter/d  describe     l  logs       /  filter
  r  restart            s  stop       t  start
  o  set a node override (env.NAME, image, enabled, ...)
  Filter: words match what the columns show; phase=failed, want=stop
  match one column; !word excludes.

[b]Workload detail[/b]
  l  logs     r/s/t  restart/stop/start     o  set override
  x  remove the override of the selected field (FROM node only)

[b]Events[/b]
  Enter  open the workload of the entry       /  filter

[b]Logs[/b]
  f  follow on/off      p/Space  pause/resume    /  search
  n/N  next/previous match (says when it wraps around)
  g/G  top/bottom       arrows, PgUp/PgDn  scroll back
  A line "--- started ... ---" marks each start of the container.

[b]Changing things[/b]
  Restart, stop, start and overrides ask for confirmation, your
  technician name and PIN. The change is signed by this node for you,
  recorded in the history (view 4) and synced. Wrong PINs lock you
  out after 5 tries. A change a fleet policy forbids is refused, with
  the reason.
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
