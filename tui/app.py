"""``lexedge tui``: search an index from the terminal as you type (issue #7).

The screen follows Textual's dictionary example: :meth:`LexedgeApp.compose` lays it out, the
styles live in ``lexedge.tcss``, and every search runs in an exclusive worker thread, so a new
keystroke supersedes the search in flight and the screen never waits on one.

Example::

    LexedgeApp(index_path="idx").run()
"""

from __future__ import annotations

from pathlib import Path

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Container, Horizontal
from textual.content import Content
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Input
from textual.worker import get_current_worker

from lexedge.runtime.errors import LexedgeError
from lexedge.runtime.settings import SearchSettings
from lexedge.runtime.snippets import displayable

from .context import neighbours
from .filters import describe, parse_filter, title_prefix_style
from .history import QueryHistory
from .opener import open_local_file, source_path
from .screens import HelpScreen, MessageScreen
from .settings import LIVE_BUDGET, SearchControls
from .widgets import (ControlsBar, Preview, QueryInput, ResultsTable, SearchBox, StatusBar,
                      article_content)

DEBOUNCE_SECONDS = 0.25
BUDGET_KEYS = Binding.Group("budget K", compact=True)
ALPHA_KEYS = Binding.Group("alpha", compact=True)


class LexedgeApp(App):
    """Search-as-you-type over one index.

    Args:
        index_path: the index folder (opened in a worker once the screen is up).
        bundle: a bundle folder overriding the one the index records.
        searcher: an open searcher (or any object with its interface) instead of a path.
        settings: the initial budget, reranking (``rerank=0`` starts it off), alpha and
            filters; default :func:`~lexedge.tui.settings.tui_defaults`.
        opener: called with a source file's path to open it (tests pass a recorder).
        debounce: seconds of quiet after a keystroke before the search-as-you-type starts.
        test_mode: deterministic screens for snapshot tests: latency masked, no cursor blink.
    """

    CSS_PATH = "lexedge.tcss"
    TITLE = "lexedge"
    ENABLE_COMMAND_PALETTE = False  # every action has a key, listed on F1
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    # description: the footer's word; tooltip: the help screen's line (F1).
    BINDINGS = [
        Binding("left_square_bracket", "budget(-1)", "K−", priority=True, group=BUDGET_KEYS,
                tooltip="Smaller retrieval budget K (faster)"),
        Binding("right_square_bracket", "budget(1)", "K+", priority=True, group=BUDGET_KEYS,
                tooltip="Larger retrieval budget K (better recall)"),
        Binding("ctrl+r", "toggle_rerank", "rerank", priority=True,
                tooltip="Reranking on/off (the bundle's cross-encoder)"),
        Binding("left_curly_bracket", "alpha(-1)", "α−", priority=True, show=False,
                tooltip="Less dense weight alpha in the hybrid fusion"),
        Binding("right_curly_bracket", "alpha(1)", "α+", priority=True, show=False,
                tooltip="More dense weight alpha in the hybrid fusion"),
        Binding("ctrl+y,c", "copy_citation", "cite",
                tooltip="Copy the citation (the article's title)"),
        Binding("ctrl+t,t", "copy_text", "copy", show=False,
                tooltip="Copy the article's title and text"),
        Binding("ctrl+o,o", "open_source", "open", show=False,
                tooltip="Open the source file (local files only)"),
        Binding("ctrl+f", "focus_filter", "filter", show=False, priority=True,
                tooltip="Filter by law, source file or folder"),
        Binding("escape,slash", "focus_query", "search", show=False,
                tooltip="Back to the search box"),
        Binding("f1,question_mark", "help", "help", tooltip="This list of keys"),
        Binding("f2", "toggle_theme", "theme", tooltip="Light / dark theme"),
        Binding("ctrl+q", "quit", "quit", priority=True, tooltip="Quit"),
        Binding("q", "quit", "quit", show=False, tooltip="Quit"),
    ]

    def __init__(self, index_path: str | Path | None = None, bundle: str | Path | None = None,
                 searcher=None, settings: SearchSettings | None = None,
                 opener=open_local_file, debounce: float = DEBOUNCE_SECONDS,
                 test_mode: bool = False, server: str | None = None,
                 token_file: Path | None = None):
        super().__init__()
        self.index_path, self.bundle_path = index_path, bundle
        self.server, self.token_file = server, token_file
        self.searcher = searcher
        self.controls = SearchControls() if settings is None \
            else SearchControls.starting_from(settings)
        self.opener = opener
        self.debounce = debounce
        self.test_mode = test_mode
        self.history = QueryHistory()
        self.result = None  # the SearchResult on screen
        self.result_live = False
        self.searches_started = 0  # numbers each request; only the newest may show
        self._debounce: Timer | None = None
        self._has_law_field, self._title_style = False, "{law}*"

    def compose(self) -> ComposeResult:
        with Horizontal(id="search-row"):
            yield QueryInput(placeholder="Search: type a question or words…", id="query")
            yield SearchBox(placeholder="民法, dir/, key=value", id="filter")
        yield ControlsBar(id="controls")
        with Container(id="body"):
            yield ResultsTable(id="results")
            yield Preview(id="preview")
        yield StatusBar(id="status")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#query").border_title = "Search"
        self.query_one("#filter").border_title = "Filter (^f)"
        self.query_one("#preview").border_title = "Article"
        if self.test_mode:
            for box in self.query(Input):
                box.cursor_blink = False
        self.query_one("#query").focus()
        if self.searcher is None:
            self.status("Opening the index…")
            self.load_searcher()
        else:
            self.searcher_ready(self.searcher)

    # -- loading -----------------------------------------------------------------------------

    @work(thread=True, group="load")
    def load_searcher(self) -> None:
        from lexedge.runtime.searcher import Searcher

        try:
            if self.server is not None:
                from lexedge.runtime.client import RemoteSearcher, ServiceClient

                searcher = RemoteSearcher(ServiceClient(self.server, token_file=self.token_file))
            elif self.index_path is None:
                raise LexedgeError("no index given: run `lexedge tui --index IDX`")
            else:
                searcher = Searcher(self.index_path, bundle=self.bundle_path)
        except (LexedgeError, OSError, ValueError) as exc:
            self.call_from_thread(self.cannot_open, str(exc))
            return
        self.call_from_thread(self.searcher_ready, searcher)

    def cannot_open(self, message: str) -> None:
        self.push_screen(MessageScreen(
            "Cannot open the index", message,
            "An index comes from `lexedge index build --docs CORPUS --out IDX`; an index "
            "with vectors also needs its bundle (--bundle B if it has moved)."))

    def searcher_ready(self, searcher) -> None:
        index = searcher.index
        if len(index) == 0:
            self.cannot_open(f"{index.path}: the index is empty (no documents)")
            return
        self.searcher = searcher
        self.controls.start_alpha(searcher.alpha)  # the bundle's weight, unless one was given
        live_rows = [r for r in range(min(len(index.docs), 50)) if r not in index.deleted]
        samples = [index.docs.get(r) for r in live_rows]
        self._has_law_field = any("law" in d.metadata for d in samples)
        self._title_style = title_prefix_style(samples)
        self.refresh_controls()
        self.show_idle()
        if self.query_one("#query", Input).value.strip():
            self.search_now(live=False)

    @property
    def bundle_label(self) -> str:
        bundle = getattr(self.searcher.index, "bundle", None) if self.searcher else None
        if bundle is None:
            return "BM25 only"
        name = bundle.manifest.get("name") or Path(bundle.path).name
        return f"bundle {name} ({bundle.sha256[:8]})"

    # -- searching ---------------------------------------------------------------------------

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            self.controls.set_filters(parse_filter(event.value, self._has_law_field,
                                                   self._title_style))
            self.refresh_controls()
        if self._debounce is not None:
            self._debounce.stop()
        self._debounce = self.set_timer(self.debounce, lambda: self.search_now(live=True))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.history.add(self.query_one("#query", Input).value)
        self.search_now(live=False)

    def search_now(self, live: bool) -> None:
        """Start a search of the query box's text; a newer one makes this one stale."""
        if self._debounce is not None:
            self._debounce.stop()
            self._debounce = None
        if self.searcher is None:
            return
        query = self.query_one("#query", Input).value
        self.searches_started += 1
        if not query.strip():
            self.workers.cancel_group(self, "search")
            self.result = None
            self.query_one(ResultsTable).show_hits([])
            self.show_idle()
            return
        self.status_search(query, running=True)
        self.run_search(self.searches_started, query, self.controls.request(live), live)

    @work(exclusive=True, thread=True, group="search")
    def run_search(self, request: int, query: str, settings: SearchSettings,
                   live: bool) -> None:
        worker = get_current_worker()
        try:
            result = self.searcher.search(query, settings)
        except LexedgeError as exc:
            if not worker.is_cancelled:
                self.call_from_thread(self.say, str(exc), severity="error")
            return
        if not worker.is_cancelled:
            self.call_from_thread(self.show_result, request, result, live)

    def show_result(self, request: int, result, live: bool) -> None:
        if request != self.searches_started:
            return  # a newer search is on its way
        self.result, self.result_live = result, live
        if live:
            self.history.add(result.query)
        table = self.query_one(ResultsTable)
        table.show_hits(result.hits)
        if not result.hits:
            self.query_one(Preview).show(Content(displayable(
                f"No results for “{result.query}” (filter: "
                f"{describe(self.controls.settings.filters)}).")))
        self.status_search(result.query)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        hit = self.selected_hit
        if hit is not None:
            before, after = neighbours(self.searcher.index, hit.id)
            self.query_one(Preview).show(article_content(hit, before, after))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.query_one(Preview).focus()

    @property
    def selected_hit(self):
        if self.result is None or not self.result.hits:
            return None
        row = self.query_one(ResultsTable).cursor_row
        return self.result.hits[row] if 0 <= row < len(self.result.hits) else None

    # -- what the screen says ----------------------------------------------------------------

    def status(self, text: str) -> None:
        self.query_one(StatusBar).update(Content(displayable(text)))

    def say(self, message: str, severity: str = "information") -> None:
        """A notification that may quote a document, a file name or an error: shown as
        written, neither markup nor terminal controls (issue 20, finding 10)."""
        self.notify(displayable(message), severity=severity, markup=False)

    def status_search(self, query: str, running: bool = False) -> None:
        parts = [self.bundle_label]
        if running:
            parts.append("searching…")
        elif self.result is not None:
            hits = len(self.result.hits)
            latency = "– ms" if self.test_mode else f"{self.result.timings_ms['total']:.0f} ms"
            mode = f"typing: K≤{LIVE_BUDGET}, no rerank" if self.result_live else "full"
            parts.append(f"{hits} hit{'s' * (hits != 1)} in {latency} ({mode})")
        parts.append(f"filter: {describe(self.controls.settings.filters)}")
        self.status(" │ ".join(parts))

    def show_idle(self) -> None:
        index = self.searcher.index
        analyzer = index.manifest.get("analyzer", {}).get("name", "?")
        self.query_one(Preview).show(
            f"Type to search {len(index):,} articles ({analyzer} analyzer); Enter searches "
            "at the full budget.\nF1 lists every key.")
        self.status(f"{self.bundle_label} │ {len(index):,} documents │ ready")

    def refresh_controls(self) -> None:
        if self.searcher is not None:
            self.query_one(ControlsBar).show(self.controls, self.searcher.has_dense,
                                             self.searcher.has_reranker)

    # -- actions -----------------------------------------------------------------------------

    def action_budget(self, direction: int) -> None:
        self.controls.step_budget(direction)
        self.refresh_controls()
        self.search_now(live=False)

    def action_alpha(self, direction: int) -> None:
        if self.searcher is None or not self.searcher.has_dense:
            self.notify("alpha weighs dense against BM25: this index is BM25 only")
            return
        self.controls.step_alpha(direction)
        self.refresh_controls()
        self.search_now(live=False)

    def action_toggle_rerank(self) -> None:
        if self.searcher is None or not self.searcher.has_reranker:
            self.notify("no reranker: this index's bundle has none" if self.searcher and
                        self.searcher.has_dense else "no reranker: this index is BM25 only")
            return
        self.controls.toggle_rerank()
        self.refresh_controls()
        self.search_now(live=False)

    def action_copy_citation(self) -> None:
        hit = self.selected_hit
        if hit is None:
            self.notify("no article selected", severity="warning")
            return
        self.copy_to_clipboard(hit.title or hit.id)
        self.history.add(self.query_one("#query", Input).value)
        self.say(f"copied 「{hit.title or hit.id}」")

    def action_copy_text(self) -> None:
        hit = self.selected_hit
        if hit is None:
            self.notify("no article selected", severity="warning")
            return
        self.copy_to_clipboard(f"{hit.title}\n{hit.text}" if hit.title else hit.text)
        self.say(f"copied the text of {hit.title or hit.id}")

    def action_open_source(self) -> None:
        hit = self.selected_hit
        if hit is None:
            self.notify("no article selected", severity="warning")
            return
        try:
            path = source_path(hit.metadata, self.searcher.index.manifest)
            self.opener(path)
        except LexedgeError as exc:
            self.say(str(exc), severity="warning")
            return
        self.say(f"opened {path}")

    def action_focus_filter(self) -> None:
        self.query_one("#filter").focus()

    def action_focus_query(self) -> None:
        self.query_one("#query").focus()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_toggle_theme(self) -> None:
        self.theme = "textual-light" if self.current_theme.dark else "textual-dark"

    def action_history(self, direction: int) -> None:
        box = self.query_one("#query", Input)
        box.value = self.history.previous(box.value) if direction < 0 \
            else self.history.next(box.value)
        box.cursor_position = len(box.value)
