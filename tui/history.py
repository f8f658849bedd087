"""Recent queries, browsed with up/down in the search box like a shell's history.

Search-as-you-type sees every prefix of a query (労, 労働, 労働契約…); a query that extends or
shortens the last one replaces it, so the history holds what the user meant, not each
keystroke. Kept in memory only: queries on a law office's laptop can be confidential.
"""

from __future__ import annotations


class QueryHistory:
    """Most recent last; :meth:`previous` / :meth:`next` move a cursor through it.

    Example:
        >>> history = QueryHistory()
        >>> for typed in ["労", "労働", "労働契約", "民法"]:
        ...     history.add(typed)
        >>> history.entries
        ['労働契約', '民法']
        >>> history.previous("")
        '民法'
    """

    def __init__(self, limit: int = 100):
        self.entries: list[str] = []
        self.limit = limit
        self._cursor: int | None = None  # index into entries while browsing
        self._draft = ""  # what was typed before browsing started

    def add(self, query: str) -> None:
        query = query.strip()
        if self._cursor is not None and self.entries[self._cursor] == query:
            return  # the search of a recalled entry: keep browsing from it
        self._cursor = None
        if not query:
            return
        if self.entries:
            last = self.entries[-1]
            if query.startswith(last) or last.startswith(query):
                self.entries[-1] = query if len(query) >= len(last) else last
                return
        if query in self.entries:
            self.entries.remove(query)
        self.entries.append(query)
        del self.entries[:-self.limit]

    def previous(self, current: str) -> str:
        """The query before the one shown (the newest when browsing starts)."""
        if not self.entries:
            return current
        if self._cursor is None:
            self._draft, self._cursor = current, len(self.entries)
        self._cursor = max(0, self._cursor - 1)
        return self.entries[self._cursor]

    def next(self, current: str) -> str:
        """The query after the one shown; past the newest, what was typed before browsing."""
        if self._cursor is None:
            return current
        self._cursor += 1
        if self._cursor >= len(self.entries):
            self._cursor = None
            return self._draft
        return self.entries[self._cursor]
