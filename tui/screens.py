"""The screens over the search screen: the key list (F1) and the message shown instead of a
traceback when the index cannot be opened."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.content import Content
from textual.containers import Vertical, VerticalScroll
from textual.markup import escape
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

from lexedge.runtime.snippets import displayable

# Keys that belong to Textual's widgets rather than to a binding of ours.
WIDGET_KEYS = [
    ("enter", "Search at the full budget, reranked (in the search box)"),
    ("tab / shift+tab", "Next / previous: search, filter, results, article"),
    ("↑ ↓ pgup pgdn", "Move the selection (results) or scroll (article)"),
    ("mouse", "Click a result; click ◂ ▸ or 'rerank' on the controls bar"),
]


def key_table(app) -> list[tuple[str, str]]:
    """Every key of ``app`` with what it does: its bindings grouped by action (a key typed
    into a text box only where the description says so), then the widgets' own keys."""
    from .widgets import QueryInput

    actions: dict[str, tuple[list[str], str]] = {}
    for binding in list(app.BINDINGS) + list(QueryInput.BINDINGS):
        if not isinstance(binding, Binding) or not binding.description:
            continue
        keys, _ = actions.setdefault(binding.action.removeprefix("app."),
                                     ([], binding.tooltip or binding.description))
        for key in binding.key.split(","):
            keys.append(app.get_key_display(Binding(key.strip(), binding.action)))
    rows = [(" / ".join(keys), description) for keys, description in actions.values()]
    return rows + WIDGET_KEYS


class HelpScreen(ModalScreen):
    """Every key, generated from the bindings so the list cannot fall behind them."""

    BINDINGS = [Binding("escape,f1,q,question_mark", "dismiss", "Close help", show=False)]

    def compose(self) -> ComposeResult:
        rows = key_table(self.app)
        width = max(len(keys) for keys, _ in rows) + 2
        lines = [Content.assemble((keys.ljust(width), "bold"), description)
                 for keys, description in rows]
        with Vertical(id="help-panel"):
            yield Static("[b]lexedge — keys[/b]   [dim](Esc closes)[/dim]", id="help-title")
            with VerticalScroll(id="help-keys"):
                yield Static(Content("\n").join(lines))


class MessageScreen(Screen):
    """A problem the person can fix (a missing, mismatched or empty index), said plainly."""

    BINDINGS = [Binding("q,escape,enter", "leave", "Quit", show=False)]

    def __init__(self, title: str, message: str, hint: str = ""):
        super().__init__()
        self.title_text, self.message, self.hint = title, message, hint

    def compose(self) -> ComposeResult:
        with Vertical(id="message-panel"):
            yield Static(f"[b]{escape(self.title_text)}[/b]", id="message-title")
            yield Static(escape(displayable(self.message)), id="message-text")
            if self.hint:
                yield Static(escape(self.hint), id="message-hint")
            yield Static("[dim]Press q to quit.[/dim]")

    def action_leave(self) -> None:
        self.app.exit(return_code=2)
