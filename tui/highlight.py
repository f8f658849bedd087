"""Mark the query's terms in an article's text.

The searcher reports ``Hit.matched_terms`` as the index analyzer sees them: NFKC-normalised
and case-folded (``ＡＩ`` in a statute is ``ai`` to the analyzer). The preview shows the
original text, so a term is found in the normalised text and its span mapped back, character
by character, to the original.
"""

from __future__ import annotations

from lexedge.runtime.analysis import normalize


def normalized_with_origins(text: str) -> tuple[str, list[int]]:
    """The normalised text and, for each of its characters, the original character's index."""
    pieces, origins = [], []
    for position, character in enumerate(text):
        folded = normalize(character)
        pieces.append(folded)
        origins.extend([position] * len(folded))
    return "".join(pieces), origins


def term_spans(text: str, terms: list[str]) -> list[tuple[int, int]]:
    """Merged ``(start, end)`` spans of ``text`` holding any of ``terms``, in order.

    Example:
        >>> term_spans("個人情報の保護", ["個人情報", "情報"])
        [(0, 4)]
    """
    flat, origins = normalized_with_origins(text)
    marked = [False] * len(text)
    for term in terms:
        if not term.strip():
            continue
        start = flat.find(term)
        while start >= 0:
            for index in range(start, start + len(term)):
                marked[origins[index]] = True
            start = flat.find(term, start + len(term))
    spans, start = [], None
    for index, is_marked in enumerate(marked + [False]):
        if is_marked and start is None:
            start = index
        elif not is_marked and start is not None:
            spans.append((start, index))
            start = None
    return spans


def display_terms(terms: list[str]) -> list[str]:
    """The terms worth marking: once a query has words of two or more characters, its single
    characters (的, の, 法) are mostly particles, and marking each of them buries the words.

    Example:
        >>> display_terms(["经济补偿", "的"]), display_terms(["法"])
        (['经济补偿'], ['法'])
    """
    if any(len(t.strip()) > 1 for t in terms):
        return [t for t in terms if len(t.strip()) > 1]
    return list(terms)
