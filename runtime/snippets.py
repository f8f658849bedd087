"""What a person sees of a hit: the query's terms found in it, a snippet around the first one,
and text made safe to print on a terminal.

The work per hit is bounded (issue 20, finding 9): re-analysing a whole 50 MB document for
its matched terms took 25 s and 2.9 GB on every search that returned it. A text longer than
:data:`MATCH_TEXT_CHARS` is analysed only around the places where the query's terms occur.
"""

from __future__ import annotations

from .analysis import Analyzer, normalize

#: Texts up to this many characters are analysed whole, exactly as the index analysed them
#: (every article in ../shared/data is: the longest has 30,789 characters; analysing 50,000
#: takes about 0.1 s). A longer text is analysed only in windows around the first
#: :data:`MATCH_OCCURRENCES` occurrences of each query term, at most this many characters in
#: all; its snippet is cut from around the first matched term the same way. Neither
#: normalises the whole text: NFKC alone takes 2.3 s over 50 MB of statutes.
MATCH_TEXT_CHARS = 50_000
#: Characters on each side of a term's occurrence in a window: enough context for the
#: analyzer to segment the words around it as it does in the whole text.
MATCH_CONTEXT_CHARS = 100
#: Occurrences of each term looked at: one where the analyzer segments the text otherwise
#: (情報 inside a longer compound) need not be the only one.
MATCH_OCCURRENCES = 3
#: Query terms looked for in a long text, longest first: each look is a scan of the text
#: (about 10 ms for 50 MB), and a 2,000-character query has hundreds of terms.
MATCH_TERMS = 50


def matched_terms(analyzer: Analyzer, query: str, text: str,
                  query_terms: set[str] | None = None,
                  held: set[str] | None = None) -> list[str]:
    """Query terms (as the analyzer sees them) that also occur in ``text``, longest first, so
    a highlighter marks 個人情報 before 情報. ``query_terms``: the query's, when the caller
    analysed it already (a search does once for all its hits). ``held``: the query terms the
    text is known to hold (an index's BM25 matrix knows them for its documents,
    :meth:`~lexedge.runtime.bm25.BM25Index.terms_held`): the text is not analysed.

    In a text longer than :data:`MATCH_TEXT_CHARS` a term is looked for where the text spells
    it as the analyzer does (or capitalised, or in capitals); so there a term written only in
    another width (ＡＩ for ai), or a Japanese verb or adjective the analyzer reduces to a base
    form the text never spells out (得る for 得ない), is not reported.
    """
    query_terms = set(analyzer.tokens(query)) if query_terms is None else query_terms
    if not query_terms:
        return []
    if held is not None:
        return _longest_first(query_terms & held)
    if len(text) > MATCH_TEXT_CHARS:
        query_terms = set(_longest_first(query_terms)[:MATCH_TERMS])
        text = _term_windows(text, query_terms)
    return _longest_first(query_terms & set(analyzer.tokens(text)))


def _longest_first(terms) -> list[str]:
    return sorted(terms, key=lambda term: (-len(term), term))


def _spellings(term: str) -> tuple[str, ...]:
    """How a text may spell an analyzer's (case-folded) term."""
    return tuple(dict.fromkeys((term, term.capitalize(), term.upper())))


def _term_windows(text: str, terms) -> str:
    """The parts of ``text`` around ``terms``' first occurrences, merged and joined by newlines
    (which no analyzer joins a word across)."""
    spans, budget = [], MATCH_TEXT_CHARS
    for term in _longest_first(terms):
        for spelling in _spellings(term):
            start, seen = text.find(spelling), 0
            while start >= 0 and seen < MATCH_OCCURRENCES and budget > 0:
                span = (max(0, start - MATCH_CONTEXT_CHARS),
                        min(len(text), start + len(spelling) + MATCH_CONTEXT_CHARS))
                spans.append(span)
                budget -= span[1] - span[0]
                start, seen = text.find(spelling, start + len(spelling)), seen + 1
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return "\n".join(text[start:end] for start, end in merged)


def snippet(text: str, terms: list[str], width: int = 120) -> str:
    """``width`` characters of the NFKC-normalised text centred on the first matched term.

    In a text longer than :data:`MATCH_TEXT_CHARS` only the neighbourhood of that term
    (found as :func:`matched_terms` finds it) is normalised and flattened.
    """
    cut_before = cut_after = False
    if len(text) > MATCH_TEXT_CHARS:
        found = [position for position in (text.find(spelling) for t in terms if t
                                           for spelling in _spellings(t)) if position >= 0]
        first = min(found) if found else 0
        start, end = max(0, first - 2 * width), first + 2 * width
        cut_before, cut_after = start > 0, end < len(text)
        text = text[start:end]
    flat = " ".join(normalize(text).split())
    hits = [flat.find(t) for t in terms if t and flat.find(t) >= 0]
    first = min(hits) if hits else 0
    start = max(0, min(first - width // 3, len(flat) - width))
    piece = flat[start:start + width]
    return ("…" if start > 0 or cut_before else "") + piece + \
        ("…" if start + width < len(flat) or cut_after else "")


# Characters that a terminal may act on rather than show (issue 20, finding 10): C0 controls
# but tab and newline (ESC starts the sequences that retitle a terminal, move the cursor or
# write a clipboard), DEL, the C1 controls (U+009B is a one-character CSI), and the bidi
# overrides and isolates, which reorder what follows them on the line (CVE-2021-42574). Lone
# surrogates (a corpus may hold "\ud800") cannot be written as UTF-8 at all.
# C0 controls show as their Unicode control pictures (ESC as ␛), the others as U+FFFD.
_UNSAFE_FOR_TERMINALS = {
    **{code: 0x2400 + code for code in range(0x20) if chr(code) not in "\t\n"},
    0x7F: 0x2421,
    **{code: 0xFFFD for code in (*range(0x80, 0xA0), *range(0x202A, 0x202F),
                                 *range(0x2066, 0x206A), *range(0xD800, 0xE000))},
}


def displayable(text: str) -> str:
    """``text`` with every character a terminal would act on replaced by a visible stand-in
    (``"\\x1b]0;x\\x07"`` becomes ``"␛]0;x␇"``); newlines and tabs are kept.

    Example:
        >>> displayable("民法\\x1b[2J 第九十条\\u202e")
        '民法␛[2J 第九十条�'
    """
    return text.translate(_UNSAFE_FOR_TERMINALS)


def json_safe(dumped: str) -> str:
    """JSON text (``json.dumps(..., ensure_ascii=False)``) with the characters
    :func:`displayable` replaces written as ``\\uXXXX`` escapes: the C0 controls JSON escapes
    itself; DEL, C1, the bidi controls and lone surrogates it writes as they are. The parsed
    values keep the exact text."""
    return dumped.translate(_JSON_ESCAPES)


_JSON_ESCAPES = {code: f"\\u{code:04x}" for code in _UNSAFE_FOR_TERMINALS if code >= 0x20}
