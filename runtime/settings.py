"""What a search asks for: the one place each search setting is declared, with its default.

``lexedge search``, ``lexedge demo``, ``lexedge eval``, ``lexedge tui`` and the Python API
(:meth:`~lexedge.runtime.searcher.Searcher.search`) all take a :class:`SearchSettings`: the
command lines build their options from its fields (default and help text included, see
:func:`lexedge.runtime.cli.add_search_settings`), eval's config and the TUI's controls start
from its defaults, and its validation is the only check of the values (issue 18, item 3).

Example::

    settings = SearchSettings(budget=200, rerank=0)
    searcher.search("解雇の予告", settings)
    searcher.search("解雇の予告", budget=200, rerank=0)  # the same, as keywords
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import LexedgeError

#: The first-stage fusions :func:`lexedge.runtime.fusion.fuse` implements.
FUSIONS = ("weighted", "rrf")
#: The fusion's dense weight where neither the search nor the bundle gives one.
DEFAULT_ALPHA = 0.5

# How each setting's values are checked, here and (by the same name) by the command line's
# argparse types in lexedge.runtime.cli.
POSITIVE = "positive"  # an integer >= 1
NON_NEGATIVE = "non-negative"  # an integer >= 0
FRACTION = "fraction"  # a number within [0, 1]
CHOICE = "choice"  # one of metadata["choices"]
FILTERS = "filters"  # a mapping of metadata names to text


def _setting(kind: str, help: str, **metadata):
    return {"kind": kind, "help": help, **metadata}


@dataclass(frozen=True)
class SearchSettings:
    """The settings of one search; each is checked when the settings are made.

    Args:
        budget: K, the fused first-stage candidates handed on (to the reranker and the
            results): the quality/latency knob (recall grows with K, and so does the work;
            see ``bench/``).
        pool: each first-stage retriever (dense and BM25) fetches ``pool * K`` candidates,
            and the fusion keeps its best K: an article one retriever ranks just below K
            can still win on the other's score (3, chosen on STARD and ja_appi dev; 1 fuses
            the two top-K lists alone).
        rerank: N, how many fused candidates the bundle's cross-encoder re-scores (0: none;
            ignored when the bundle has no reranker).
        rerank_weight: the re-ranked head is ordered by ``w * reranker + (1 - w) * first
            stage`` (both min-max normalised over the head); 1 is pure re-ranking. ``None``:
            the bundle's (chosen by ``lexedge select``), else 1.
        rerank_tokens: T, how many tokens of each re-scored passage a late-interaction
            reranker reads: fewer is faster and reads less of long passages. ``None``: the
            bundle's (chosen on dev for the index's language by ``lexedge
            late-interaction``). A cross-encoder reads each query-passage pair to its own
            length and refuses it. An index's stored passage states serve only the count
            they were stored at; another reads the passages live.
        alpha: dense weight in the weighted fusion (0 = BM25 only, 1 = dense only).
            ``None``: the bundle's (the weight chosen for its embedder on dev, recorded by
            ``lexedge export --alpha``), else :data:`DEFAULT_ALPHA`.
        fusion: ``weighted`` (normalised scores, 2412.19265) or ``rrf`` (reciprocal rank).
        top: hits returned.
        filters: metadata filters, applied before ranking, e.g. ``{"law": "民法"}``: a value
            is a glob (``{"source": "*.md"}``), a folder when it ends in ``/``
            (``{"source": "contracts/"}``), else must be equal; keys are metadata fields,
            ``title`` or ``id`` (see :mod:`lexedge.runtime.filters`).

    Raises:
        LexedgeError: one line naming the setting that is out of range, e.g. ``budget -5:
            must be a positive integer``.
    """

    budget: int = field(default=100, metadata=_setting(
        POSITIVE, "retrieval budget K: fused first-stage candidates", metavar="K"))
    pool: int = field(default=3, metadata=_setting(
        POSITIVE, "each retriever fetches P x K candidates; the fusion keeps the best K",
        metavar="P"))
    rerank: int = field(default=20, metadata=_setting(
        NON_NEGATIVE, "re-score the top N with the bundle's reranker; 0: off", metavar="N"))
    rerank_weight: float | None = field(default=None, metadata=_setting(
        FRACTION, "order the re-scored N by W x reranker + (1 - W) x first stage "
                  "(default: the bundle's, else 1: reranker alone)", metavar="W"))
    rerank_tokens: int | None = field(default=None, metadata=_setting(
        POSITIVE, "read each re-scored passage to T tokens; fewer is faster (default: the "
                  "bundle's, chosen for the index's language; another count than the index's "
                  "stored passage states were made at reads the passages live)", metavar="T"))
    alpha: float | None = field(default=None, metadata=_setting(
        FRACTION, "dense weight in the weighted fusion: 0 = BM25 only, 1 = dense only "
                  f"(default: the bundle's, else {DEFAULT_ALPHA})"))
    fusion: str = field(default="weighted", metadata=_setting(
        CHOICE, "how the dense and BM25 candidates are fused", choices=FUSIONS))
    top: int = field(default=10, metadata=_setting(POSITIVE, "results to show", metavar="N"))
    filters: Mapping[str, str] = field(default_factory=dict, metadata=_setting(
        FILTERS, "metadata filter, applied before ranking: law=民法, source=*.md (a glob), "
                 "source=contracts/ (a folder); repeatable, all must hold",
        metavar="KEY=VALUE"))

    def __post_init__(self):
        filters = {} if self.filters is None else self.filters
        if isinstance(filters, Mapping):
            # a copy: the caller's dict may change after the search was asked for
            object.__setattr__(self, "filters", dict(filters))
        for setting in dataclasses.fields(self):
            _check(setting, getattr(self, setting.name))

    def replace(self, **changes) -> SearchSettings:
        """These settings with ``changes`` (checked too); an unknown name is a TypeError."""
        return dataclasses.replace(self, **changes) if changes else self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _check(setting: dataclasses.Field, value) -> None:
    kind, name = setting.metadata["kind"], setting.name.replace("_", " ")
    if value is None and setting.default is None:
        return
    if kind in (POSITIVE, NON_NEGATIVE):
        minimum = 1 if kind == POSITIVE else 0
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
            raise LexedgeError(f"{name} {_shown(value)}: must be a {kind} integer")
    elif kind == FRACTION:
        # ``not 0 <= value <= 1`` also refuses NaN
        if isinstance(value, bool) or not isinstance(value, numbers.Real) \
                or not 0.0 <= value <= 1.0:
            raise LexedgeError(f"{name} {_shown(value)}: must be within [0, 1]")
    elif kind == CHOICE:
        if value not in setting.metadata["choices"]:
            raise LexedgeError(f"{name} {_shown(value)}: must be one of "
                               f"{', '.join(setting.metadata['choices'])}")
    elif kind == FILTERS:
        if not isinstance(value, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise LexedgeError(f"{name} {value!r}: must map metadata names to text")


def _shown(value) -> str:
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        return f"{value:g}"
    return str(value) if isinstance(value, numbers.Number) else repr(value)
