"""The search controls a person turns in the TUI: the retrieval budget K, reranking on or
off, and the hybrid weight alpha (issue #7).

K is the quality/latency knob of the runtime (see ``runtime/searcher.py`` and ``bench/``): it
moves along a ladder of round numbers so a few presses of ``[`` / ``]`` span 10 to 1000.
While a person types, searches run at a capped budget without the reranker, so each keystroke
answers fast; Enter, or any change of a control, searches at the full settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

BUDGET_LADDER = (10, 20, 50, 100, 200, 500, 1000)
LIVE_BUDGET = 50  # the most candidates a search-as-you-type keystroke asks for
ALPHA_STEP = 0.1


@dataclass
class SearchSettings:
    """What the next search asks the :class:`~lexedge.runtime.searcher.Searcher` for.

    Args:
        budget: K, candidates taken from each first-stage retriever.
        rerank: whether the bundle's cross-encoder re-scores the head of the list.
        rerank_depth: N, how many fused candidates it re-scores.
        alpha: dense weight of the weighted fusion (0 = BM25 only, 1 = dense only).
        top: hits listed.
        filters: metadata filters (see :mod:`lexedge.tui.filters`).
    """

    budget: int = 100
    rerank: bool = True
    rerank_depth: int = 20
    alpha: float = 0.5
    top: int = 20
    filters: dict = field(default_factory=dict)

    def step_budget(self, direction: int) -> int:
        """Move K one rung up (+1) or down (-1) the ladder, from wherever it is now."""
        if direction > 0:
            self.budget = next((k for k in BUDGET_LADDER if k > self.budget), BUDGET_LADDER[-1])
        else:
            self.budget = next((k for k in reversed(BUDGET_LADDER) if k < self.budget),
                               BUDGET_LADDER[0])
        return self.budget

    def step_alpha(self, direction: int) -> float:
        self.alpha = round(min(1.0, max(0.0, self.alpha + direction * ALPHA_STEP)), 2)
        return self.alpha

    def search_arguments(self, live: bool) -> dict:
        """Keyword arguments for ``Searcher.search``; ``live`` for a search-as-you-type."""
        return {"budget": min(self.budget, LIVE_BUDGET) if live else self.budget,
                "rerank": self.rerank_depth if self.rerank and not live else 0,
                "alpha": self.alpha, "top": self.top, "filters": dict(self.filters)}

    def budget_gauge(self) -> str:
        """K's place on the ladder, e.g. ``▮▮▮▮▯▯▯`` for 100."""
        rung = sum(1 for k in BUDGET_LADDER if k <= self.budget)
        return "▮" * rung + "▯" * (len(BUDGET_LADDER) - rung)
