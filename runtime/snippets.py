"""What a person sees of a hit: the query's terms found in it, longest first, a snippet around
the first one, and text made safe to print on a terminal.

A hit's matched terms are read from the index (:meth:`~lexedge.runtime.bm25.BM25Index.
terms_held`), not by analysing the hit again, so showing a hit costs the same for a 50 MB
document as for an article (issue 20, finding 9: re-analysing a whole 50 MB document took
25 s and 2.9 GB on every search that returned it). A snippet of a long text normalises only
the neighbourhood of its first matched term.
"""

from __future__ import annotations

from .analysis import normalize

#: A text longer than this is not normalised whole for its snippet: only around the first
#: matched term (NFKC alone takes 2.3 s over 50 MB of statutes; the longest article in
#: ../shared/data has 30,789 characters).
MATCH_TEXT_CHARS = 50_000


def longest_first(terms) -> list[str]:
    """``terms`` longest first (then in order), so a highlighter marks 個人情報 before 情報."""
    return sorted(terms, key=lambda term: (-len(term), term))


def _spellings(term: str) -> tuple[str, ...]:
    """How a text may spell an analyzer's (case-folded) term."""
    return tuple(dict.fromkeys((term, term.capitalize(), term.upper())))


def snippet(text: str, terms: list[str], width: int = 120) -> str:
    """``width`` characters of the NFKC-normalised text centred on the first matched term.

    In a text longer than :data:`MATCH_TEXT_CHARS` only the neighbourhood of that term (where
    the text spells it as the analyzer does, capitalised or in capitals) is normalised and
    flattened.
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
