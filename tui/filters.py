"""The filter box: what a person types, turned into :meth:`Searcher.search` ``filters``.

``民法``            articles of that law (the ``law`` field, else the title's prefix)
``contracts/``      passages whose ``source`` file lies in that folder
``source=a/*.txt``  any metadata field, ``KEY=VALUE``; a value ending in ``*`` is a prefix
Several filters are separated by commas; all must hold.
"""

from __future__ import annotations

import re

from lexedge.runtime.datasets import Document


def title_prefix_style(samples: list[Document]) -> str:
    """How a law's name leads its articles' titles: ``"{law} *"`` for ``民法 第九十条``,
    ``"{law}第*"`` for ``劳动合同法第四十六条``, ``"{law}*"`` otherwise."""
    titles = [d.title for d in samples if d.title]
    if titles and all(re.match(r"^\S+ 第", t) for t in titles):
        return "{law} *"
    if titles and all(re.match(r"^\S+?第", t) for t in titles):
        return "{law}第*"
    return "{law}*"


def parse_filter(text: str, has_law_field: bool, title_style: str = "{law}*") -> dict:
    """Filters for ``text`` (empty: none).

    Example:
        >>> parse_filter("民法", has_law_field=False, title_style="{law} *")
        {'title': '民法 *'}
        >>> parse_filter("contracts/, lang=ja", has_law_field=True)
        {'source': 'contracts/*', 'lang': 'ja'}
    """
    filters: dict[str, str] = {}
    for part in (p.strip() for p in re.split(r"[,，、]", text)):
        if not part:
            continue
        key, sep, value = part.partition("=")
        if sep and key.strip():
            filters[key.strip()] = value.strip()
        elif "/" in part or "\\" in part or part.endswith("*"):
            filters["source"] = part + "*" if part.endswith(("/", "\\")) else part
        elif has_law_field:
            filters["law"] = part
        else:
            filters["title"] = title_style.format(law=part)
    return filters


def describe(filters: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in filters.items()) or "none"
