"""The search controls a person turns in the TUI: the retrieval budget K, reranking on or
off, and the hybrid weight alpha (issue #7), over the runtime's
:class:`~lexedge.runtime.settings.SearchSettings`, whose defaults they start from.

K is the quality/latency knob of the runtime (see ``runtime/searcher.py`` and ``bench/``): it
moves along a ladder of round numbers so a few presses of ``[`` / ``]`` span 10 to 1000.
While a person types, searches run at a capped budget without the reranker, so each keystroke
answers fast; Enter, or any change of a control, searches at the full settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lexedge.runtime.settings import DEFAULT_ALPHA, SearchSettings

BUDGET_LADDER = (10, 20, 50, 100, 200, 500, 1000)
LIVE_BUDGET = 50  # the most candidates a search-as-you-type keystroke asks for
ALPHA_STEP = 0.1
#: Hits listed: the results table scrolls, so it holds more than ``lexedge search`` prints.
LISTED = 20


def tui_defaults() -> SearchSettings:
    """The settings the TUI starts from: ``SearchSettings``' own, listing :data:`LISTED`."""
    return SearchSettings(top=LISTED)


@dataclass
class SearchControls:
    """What the next search asks the :class:`~lexedge.runtime.searcher.Searcher` for.

    Args:
        settings: budget K, reranking depth N, alpha, filters … (``SearchSettings``).
        rerank_on: whether the bundle's cross-encoder re-scores the head (Ctrl-R); turning it
            off keeps N for when it is turned on again.
    """

    settings: SearchSettings = field(default_factory=tui_defaults)
    rerank_on: bool = True

    @classmethod
    def starting_from(cls, settings: SearchSettings) -> SearchControls:
        """Controls set as ``settings`` say; ``rerank=0`` starts with reranking off, and
        Ctrl-R then re-scores ``SearchSettings``' default N."""
        if settings.rerank == 0:
            return cls(settings.replace(rerank=SearchSettings().rerank), rerank_on=False)
        return cls(settings)

    def step_budget(self, direction: int) -> int:
        """Move K one rung up (+1) or down (-1) the ladder, from wherever it is now."""
        budget = self.settings.budget
        if direction > 0:
            budget = next((k for k in BUDGET_LADDER if k > budget), BUDGET_LADDER[-1])
        else:
            budget = next((k for k in reversed(BUDGET_LADDER) if k < budget), BUDGET_LADDER[0])
        self.settings = self.settings.replace(budget=budget)
        return budget

    def start_alpha(self, alpha: float) -> None:
        """Take the searcher's weight (its bundle's) when no alpha was asked for."""
        if self.settings.alpha is None:
            self.settings = self.settings.replace(alpha=alpha)

    @property
    def alpha(self) -> float:
        return DEFAULT_ALPHA if self.settings.alpha is None else self.settings.alpha

    def step_alpha(self, direction: int) -> float:
        alpha = round(min(1.0, max(0.0, self.alpha + direction * ALPHA_STEP)), 2)
        self.settings = self.settings.replace(alpha=alpha)
        return alpha

    def toggle_rerank(self) -> bool:
        self.rerank_on = not self.rerank_on
        return self.rerank_on

    def set_filters(self, filters: dict) -> None:
        self.settings = self.settings.replace(filters=filters)

    def request(self, live: bool) -> SearchSettings:
        """The settings of the next search; ``live`` for a search-as-you-type."""
        if live:
            return self.settings.replace(budget=min(self.settings.budget, LIVE_BUDGET),
                                         rerank=0)
        return self.settings if self.rerank_on else self.settings.replace(rerank=0)

    def budget_gauge(self) -> str:
        """K's place on the ladder, e.g. ``▮▮▮▮▯▯▯`` for 100."""
        rung = sum(1 for k in BUDGET_LADDER if k <= self.settings.budget)
        return "▮" * rung + "▯" * (len(BUDGET_LADDER) - rung)
