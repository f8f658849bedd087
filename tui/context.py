"""Where an article sits in its source: the law (or source file) it belongs to, and the
articles just before and after it.

Corpora say this in different ways: the bundled sample has a ``law`` field, a folder of files
indexed as passages has ``source``, and the statute corpora only have titles such as
``民法 第九十条`` or ``劳动合同法第四十六条``, from which the law's name is read.
"""

from __future__ import annotations

import re

from lexedge.runtime.datasets import Document

_NUMERAL = r"[0-9０-９一二三四五六七八九十百千万零〇两]+"
ARTICLE_TITLE = re.compile(rf"^(?P<law>.+?)\s*第{_NUMERAL}条")


def law_of(title: str, metadata: dict | None = None) -> str:
    """The law or source file an article belongs to ("" when nothing says).

    Example:
        >>> law_of("民法 第九十条"), law_of("劳动合同法第四十六条")
        ('民法', '劳动合同法')
        >>> law_of("Clause 4", {"source": "contracts/lease.txt"})
        'contracts/lease.txt'
    """
    metadata = metadata or {}
    for key in ("law", "source"):
        if metadata.get(key):
            return str(metadata[key])
    match = ARTICLE_TITLE.match(title or "")
    return match.group("law") if match else ""


def split_title(title: str, metadata: dict | None = None) -> tuple[str, str]:
    """``(law, article)``: the title without the law's name when it leads it.

    Example:
        >>> split_title("個人情報の保護に関する法律 第二十七条")
        ('個人情報の保護に関する法律', '第二十七条')
    """
    law = law_of(title, metadata)
    if law and title.startswith(law) and title[len(law):].strip():
        return law, title[len(law):].strip()
    return law, title


def neighbours(index, doc_id: str) -> tuple[Document | None, Document | None]:
    """The previous and next live rows of the document store, when they come from the same
    law or source as ``doc_id`` (a corpus lists a law's articles in order)."""
    try:
        row = index.row_of(doc_id)
        law = law_of(*_title_and_metadata(index.docs.get(row)))
    except (KeyError, IndexError, AttributeError):
        return None, None
    if not law:
        return None, None
    deleted = getattr(index, "deleted", set())

    def step(direction: int) -> Document | None:
        other = row + direction
        while 0 <= other < len(index.docs):
            if other not in deleted:
                try:
                    document = index.docs.get(other)
                except IndexError:  # a served index that no longer has the row
                    return None
                return document if law_of(*_title_and_metadata(document)) == law else None
            other += direction
        return None

    return step(-1), step(+1)


def _title_and_metadata(document: Document) -> tuple[str, dict]:
    return document.title, document.metadata
