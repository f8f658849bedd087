"""Turning a law office's files into indexable documents.

* A BEIR ``corpus.jsonl`` (or ``.jsonl.gz``) is read as it is.
* A folder is walked for ``.txt``, ``.md`` and ``.html``/``.htm`` files (``.pdf`` through
  ``pypdf`` and ``.docx`` through ``python-docx`` when those are installed).
* A statute file — one whose lines start Japanese or Chinese article headings 第…条 — is split
  into articles; each article keeps its heading in its title (``民法 第九十条``), the law's
  name being the file's first line when that is a short heading, else the file name.
* Any other document is cut into overlapping passages that remember their source file and
  position, so a hit can be shown in context.
"""

from __future__ import annotations

import html.parser
import re
from collections.abc import Iterator
from pathlib import Path

from .datasets import Document, iter_corpus
from .errors import DataError, LexedgeError

TEXT_SUFFIXES = {".txt", ".md", ".html", ".htm"}
OPTIONAL_SUFFIXES = {".pdf": "pypdf", ".docx": "python-docx"}
PASSAGE_CHARS = 600
PASSAGE_OVERLAP = 120

# 第九十条, 第九十条の二, 第90条, 第十二條 at the start of a line, optionally followed by a
# caption in brackets; what follows on the line is the article's first sentence.
ARTICLE_HEADING = re.compile(
    r"^[ \t\u3000]*(第[0-9０-９一二三四五六七八九十百千〇零两]+[条條](?:[のの][0-9０-９一二三四五六七八九十百千]+)*)"
    r"[ \t\u3000]*", re.MULTILINE)
MIN_ARTICLES = 2


def iter_documents(path: str | Path) -> Iterator[Document]:
    """Documents from a corpus file or a folder of files (see the module docstring)."""
    path = Path(path)
    if path.is_dir() and (path / "corpus.jsonl").is_file():
        path = path / "corpus.jsonl"
    if path.is_file() and path.name.endswith((".jsonl", ".jsonl.gz")):
        yield from iter_corpus(path)
        return
    if path.is_file():
        yield from document_units(path, Path(path.name))
        return
    if not path.is_dir():
        raise DataError(path, "no such file or folder")
    files = sorted(p for p in path.rglob("*") if p.is_file() and _readable(p))
    if not files:
        raise DataError(path, "no .txt, .md, .html, .pdf or .docx files found")
    for file in files:
        yield from document_units(file, file.relative_to(path))


def _readable(path: Path) -> bool:
    return path.suffix.lower() in TEXT_SUFFIXES or path.suffix.lower() in OPTIONAL_SUFFIXES


def read_text(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".html", ".htm"):
        return _html_text(_decode(path))
    if suffix == ".pdf":
        pypdf = _optional(path, "pypdf")
        return "\n".join(page.extract_text() or "" for page in pypdf.PdfReader(path).pages)
    if suffix == ".docx":
        docx = _optional(path, "docx")
        return "\n".join(p.text for p in docx.Document(str(path)).paragraphs)
    return _decode(path)


def _optional(path: Path, module: str):
    try:
        return __import__(module)
    except ImportError:
        package = "python-docx" if module == "docx" else module
        raise LexedgeError(f"{path}: reading {path.suffix} files needs `pip install {package}`"
                           ) from None


def _decode(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise DataError(path, f"not valid UTF-8 (byte 0x{raw[exc.start]:02x})", line) from None


class _TextExtractor(html.parser.HTMLParser):
    BLOCKS = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section"}

    def __init__(self):
        super().__init__()
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self.skip += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self.skip = max(0, self.skip - 1)
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data):
        if not self.skip:
            self.parts.append(data)


def _html_text(markup: str) -> str:
    extractor = _TextExtractor()
    extractor.feed(markup)
    return "".join(extractor.parts)


def document_units(path: Path, relative: Path) -> Iterator[Document]:
    """Articles of a statute file, or overlapping passages of any other file."""
    text = read_text(path)
    source = relative.as_posix()
    folder = relative.parent.as_posix() if relative.parent != Path(".") else ""
    articles = split_articles(text)
    if len(articles) >= MIN_ARTICLES:
        law = _law_name(text, path)
        for position, (heading, body) in enumerate(articles):
            yield Document(f"{source}#{heading}", body, f"{law} {heading}",
                           {"source": source, "folder": folder, "law": law,
                            "position": position})
        return
    for position, passage in enumerate(split_passages(text)):
        yield Document(f"{source}#p{position}", passage, f"{path.stem} ({position + 1})",
                       {"source": source, "folder": folder, "position": position})


def split_articles(text: str) -> list[tuple[str, str]]:
    """``[(heading, body), ...]`` at every article heading; text before the first heading
    (the law's title, its table of contents) is not an article."""
    matches = list(ARTICLE_HEADING.finditer(text))
    articles = []
    for match, following in zip(matches, matches[1:] + [None]):
        body = text[match.end():following.start() if following else len(text)].strip()
        if body:
            articles.append((match.group(1), body))
    return articles


def _law_name(text: str, path: Path) -> str:
    for line in text.splitlines():
        line = line.strip().lstrip("#").strip()
        if line:
            return line if len(line) <= 40 and not ARTICLE_HEADING.match(line) else path.stem
    return path.stem


def split_passages(text: str, size: int = PASSAGE_CHARS, overlap: int = PASSAGE_OVERLAP,
                   ) -> list[str]:
    """Windows of about ``size`` characters overlapping by ``overlap``, cut at a sentence or
    line end where one falls in the window's last quarter."""
    text = re.sub(r"[ \t\u3000]+", " ", text).strip()
    if len(text) <= size:
        return [text] if text else []
    passages, start = [], 0
    while start < len(text):
        end = min(len(text), start + size)
        if end < len(text):
            window = text[start + size * 3 // 4:end]
            breaks = [m.end() for m in re.finditer(r"[。．.!?！？\n]", window)]
            if breaks:
                end = start + size * 3 // 4 + breaks[-1]
        passages.append(text[start:end].strip())
        if end >= len(text):
            break
        start = max(end - overlap, start + 1)
    return [p for p in passages if p]
