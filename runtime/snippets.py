"""Snippets: a window of a document's text around the query's matched terms."""

from __future__ import annotations

from .analysis import Analyzer, normalize


def matched_terms(analyzer: Analyzer, query: str, text: str) -> list[str]:
    """Query terms (as the analyzer sees them) that also occur in ``text``, longest first, so
    a highlighter marks 個人情報 before 情報."""
    document_terms = set(analyzer.tokens(text))
    terms = {t for t in analyzer.tokens(query) if t in document_terms}
    return sorted(terms, key=len, reverse=True)


def snippet(text: str, terms: list[str], width: int = 120) -> str:
    """``width`` characters of the NFKC-normalised text centred on the first matched term."""
    flat = " ".join(normalize(text).split())
    hits = [flat.find(t) for t in terms if t and flat.find(t) >= 0]
    first = min(hits) if hits else 0
    start = max(0, min(first - width // 3, len(flat) - width))
    piece = flat[start:start + width]
    return ("…" if start > 0 else "") + piece + ("…" if start + width < len(flat) else "")
