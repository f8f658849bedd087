"""The widgets of the search screen: the query box with history, the controls bar, the
results table, the article preview and the status bar."""

from __future__ import annotations

from rich.cells import cell_len
from rich.text import Text
from textual.binding import Binding
from textual.content import Content
from textual.containers import VerticalScroll
from textual.markup import escape
from textual.widgets import DataTable, Input, Static

from lexedge.runtime.datasets import Document
from lexedge.runtime.snippets import displayable

from .context import law_of, split_title
from .highlight import display_terms, term_spans
from .settings import SearchControls

HIGHLIGHT = "bold $text-warning on $warning-muted"


class SearchBox(Input):
    """A text box that leaves the control keys ``[ ] { }`` (budget, alpha) to the app, so
    they work while typing; legal queries do not need them."""

    CONTROL_CHARACTERS = "[]{}"

    def check_consume_key(self, key: str, character: str | None) -> bool:
        if character is not None and character in self.CONTROL_CHARACTERS:
            return False
        return super().check_consume_key(key, character)


class QueryInput(SearchBox):
    """The search box; up and down recall earlier queries, as in a shell."""

    BINDINGS = [
        Binding("up", "app.history(-1)", "Previous query (in the search box)", show=False),
        Binding("down", "app.history(1)", "Next query (in the search box)", show=False),
    ]


class ControlsBar(Static):
    """Budget K, reranking and alpha, each clickable as well as bound to keys."""

    def show(self, controls: SearchControls, has_dense: bool, has_reranker: bool) -> None:
        settings = controls.settings
        budget = (f"K [@click='app.budget(-1)']◂[/] [b]{settings.budget}[/b] "
                  f"[@click='app.budget(1)']▸[/] {controls.budget_gauge()}")
        if has_reranker:
            state = f"on, top {settings.rerank}" if controls.rerank_on else "off"
            rerank = f"[@click=app.toggle_rerank]rerank [b]{state}[/b][/]"
        else:
            rerank = "[dim]rerank n/a[/dim]"
        if has_dense:
            alpha = (f"α [@click='app.alpha(-1)']◂[/] [b]{controls.alpha:.1f}[/b] "
                     f"[@click='app.alpha(1)']▸[/]")
        else:
            alpha = "[dim]α n/a[/dim]"
        self.update(f"{budget}  │  {rerank}  │  {alpha}")


class ResultsTable(DataTable):
    """Rank, law or source file, article and score of each hit; the two text columns share
    whatever width the table has, so long law names (個人情報の保護に関する法律) fit at 80
    columns as well as at 200."""

    FIXED_WIDTH = 3 + 8 + 4 * 2 + 2  # rank, score, cell padding, scrollbar

    def __init__(self, **kwargs):
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.hits: list = []

    def on_resize(self) -> None:
        self._rebuild()

    def show_hits(self, hits) -> None:
        self.hits = list(hits)
        self._rebuild(cursor=0)

    def _rebuild(self, cursor: int | None = None) -> None:
        cursor = self.cursor_row if cursor is None else cursor
        rows = [(str(hit.rank), *(_cell_text(part) for part in split_title(hit.title or hit.id,
                                                                          hit.metadata)),
                 f"{hit.score:8.3f}", hit.id) for hit in self.hits]
        free = max(24, self.size.width - self.FIXED_WIDTH)
        # The article part (第二十七条) is short and must show whole; the law name takes the rest.
        article_width = min(free // 2, max([cell_len(r[2]) for r in rows] + [len("Article")]))
        self.clear(columns=True)
        self.add_column("#", key="rank", width=3)
        self.add_column("Law / source", key="law", width=free - article_width)
        self.add_column("Article", key="article", width=article_width)
        self.add_column("Score", key="score", width=8)
        for rank, law, article, score, doc_id in rows:
            # Text, not str: DataTable reads a str cell as markup, and a title is no markup
            # ("[@click=app.quit]" in a title must show as written: issue 20, finding 10).
            self.add_row(rank, Text(law, no_wrap=True, end=""),
                         Text(article, no_wrap=True, end=""), score, key=doc_id)
        if rows:
            self.move_cursor(row=min(max(cursor, 0), len(rows) - 1), animate=False)


class Preview(VerticalScroll, can_focus=True):
    """The selected article with the query's terms marked, between its neighbours."""

    def compose(self):
        yield Static(id="article")

    def show(self, content: Content | str) -> None:
        self.query_one("#article", Static).update(content)
        self.scroll_home(animate=False)


class StatusBar(Static):
    pass


def _cell_text(text: str) -> str:
    """One line of a document's text for a table cell, safe for the terminal."""
    return displayable(" ".join(text.split()))


def highlighted(text: str, terms: list[str]) -> Content:
    # displayable() maps character to character, so the spans found in ``text`` still hold.
    text = displayable(text)
    content = Content(text)
    for start, end in term_spans(text, display_terms(terms)):
        content = content.stylize(HIGHLIGHT, start, end)
    return content


def article_content(hit, previous: Document | None, following: Document | None) -> Content:
    """The preview of ``hit``: title, where it comes from, scores, text, then its neighbours.

    Everything from the document is shown as written, never acted on: terminal controls are
    replaced (:func:`~lexedge.runtime.snippets.displayable`) and markup is escaped.
    """
    law = law_of(hit.title, hit.metadata)
    scores = "  ".join(f"{stage} {value:.3f}" for stage, value in hit.scores.items())
    where = displayable(" · ".join(part for part in (law, hit.id) if part))
    parts = [Content.from_markup(f"[b]{escape(displayable(hit.title or hit.id))}[/b]"),
             Content.from_markup(f"[dim]{escape(where)}   {escape(scores)}[/dim]"),
             Content(""), highlighted(hit.text, hit.matched_terms)]
    for label, neighbour in (("previous", previous), ("next", following)):
        if neighbour is not None:
            parts += [Content(""),
                      Content.from_markup(f"[dim]── {label}: "
                                          f"{escape(displayable(neighbour.title))} ──[/dim]"),
                      highlighted(neighbour.text, hit.matched_terms).stylize_before("dim")]
    return Content("\n").join(parts)
