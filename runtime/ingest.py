"""Turning a law office's files into indexable documents.

* A BEIR ``corpus.jsonl`` (or ``.jsonl.gz``) is read as it is.
* A folder is walked for ``.txt``, ``.md`` and ``.html``/``.htm`` files (``.pdf`` through
  ``pypdf`` and ``.docx`` through ``python-docx`` when those are installed).
* A statute file — one whose lines start Japanese or Chinese article headings 第…条 — is split
  into articles; each article keeps its heading in its title (``民法 第九十条``), the law's
  name being the file's first line when that is a short heading, else the file name.
* Any other document is cut into overlapping passages that remember their source file and
  position, so a hit can be shown in context; they are titled by the file's first Markdown
  heading (``秘密保持契約 (1)``), else its name (``nda (1)``).

Every unit's id is ``{source}#{name}`` and depends only on the file's path and content, so
re-reading an unchanged folder gives the same ids and ``lexedge index update`` changes nothing
(issue 20, finding 6). An article's name is its heading (``第九十条``); supplementary provisions
restart at 第一条, so after a line 附則 (or 附　則　（平成一六年一二月一日法律第一四七号）　抄) the
name is prefixed with that block: ``附則第一条``, ``附則（平成一六年一二月一日法律第一四七号）第一条``.
A name still repeated in one file gets ``~2``, ``~3`` … in file order. A passage's name is
``p{n}``.
"""

from __future__ import annotations

import bisect
import html.parser
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from .datasets import MAX_DOCUMENT_CHARS, Document, iter_corpus
from .errors import DataError, LexedgeError

TEXT_SUFFIXES = {".txt", ".md", ".html", ".htm"}
# A Markdown heading longer than this does not name its file's passages (the file name does)
MAX_TITLE_CHARS = 80
MARKDOWN_HEADING = re.compile(r"#{1,6}[ \t]+(.*?)[ \t#]*$")  # ATX: "## 第二章 #"
OPTIONAL_SUFFIXES = {".pdf": "pypdf", ".docx": "python-docx"}
PASSAGE_CHARS = 600
PASSAGE_OVERLAP = 120

# Largest file read from a folder (issue 20, finding 9): a .txt/.md/.html file bigger than this
# on disk, or a .pdf/.docx whose extracted text is bigger in UTF-8 (their size on disk is mostly
# images and fonts), is refused before it is indexed. 50 MB of Japanese is about 17 million
# characters, some 70 times the whole 民法 (about 234,000 characters).
MAX_FILE_BYTES = 50_000_000
# A text file holds no NUL bytes and hardly any other control characters: past this many it is
# binary data with a text name (a file of NULs otherwise became 209 passages; finding 8).
MAX_CONTROL_CHARS = 8
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")  # tab, newlines, \v and \f are text

_SPACE = r"[ \t\u3000]"
_NUMERAL = r"[0-9０-９一二三四五六七八九十百千〇零两]+"
_ARTICLE = rf"第{_NUMERAL}[条條](?:[のノ]{_NUMERAL})*"
# An article heading at the start of a line: 第九十条, 第九十条の二 (old laws: 第六条ノ二), 第90条,
# 第十二條, or a range of deleted articles (第三十八条から第八十四条まで　削除, 第四条及び第五条　削除).
# It must be followed by a space, the end of the line, or a caption in brackets (第一条（目的）):
# a line that starts with a reference and goes on (第二十七条から第二十九条までの規定は…,
# 第五条及び第六条の規定, 第三条の規定により) is a sentence of the article before (finding 6).
# A caption holds no 第, 、 or 。 and is not followed by a particle, which keeps out
# 第五条（第三項を除く。）の規定は… and 第八十一条（外患誘致）の罪.
ARTICLE_HEADING = re.compile(
    rf"^{_SPACE}*(?P<heading>{_ARTICLE}(?:から{_ARTICLE}まで|及び{_ARTICLE})?)"
    rf"(?:[（(【][^）)】第、。\n]{{1,40}}[）)】](?![のにをはがとでもや、。又及若並])|(?={_SPACE}|$))",
    re.MULTILINE)
# 附則 (Chinese 附则) alone on a line, optionally naming the amending act and 抄 (excerpt), as
# e-Gov prints supplementary provisions: 附　則　（平成一六年一二月一日法律第一四七号）　抄.
SUPPLEMENTARY_HEADING = re.compile(
    rf"^{_SPACE}*附{_SPACE}*[則则](?:{_SPACE}*[（(](?P<act>[^）)\n]+)[）)])?(?:{_SPACE}*抄)?"
    rf"{_SPACE}*$")
# 第一編 総則, 第二章 人, 第一節, 第八章 附则 …: the structure between articles, part of none.
STRUCTURE_HEADING = re.compile(
    rf"^{_SPACE}*第{_NUMERAL}[編章節款目编节](?:[のノ]{_NUMERAL})*(?:{_SPACE}.*)?$")
# e-Gov puts an article's caption on the line above its heading: （基本原則）\n第一条　私権は….
CAPTION_LINE = re.compile(rf"^{_SPACE}*[（(][^）)\n]{{1,40}}[）)]{_SPACE}*$")
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
    skipped = 0
    for file in files:
        if file.suffix.lower() not in OPTIONAL_SUFFIXES:
            yield from document_units(file, file.relative_to(path))
            continue
        # A damaged or encrypted .pdf/.docx is skipped with a warning, not the whole folder
        # (issue 23); its reader's errors are its own classes, hence the broad except.
        try:
            units = list(document_units(file, file.relative_to(path)))
        except LexedgeError:
            raise  # a missing reader package or a limit: the user must act
        except Exception as error:  # noqa: BLE001
            skipped += 1
            reason = " ".join(str(error).split()) or type(error).__name__
            print(f"lexedge: warning: {file}: skipped, cannot read this {file.suffix} file "
                  f"({reason[:200]})", file=sys.stderr, flush=True)
            continue
        yield from units
    if skipped:
        print(f"lexedge: warning: skipped {skipped} of {len(files)} files in {path} (named "
              "above); fix or remove them and run `lexedge index update`", file=sys.stderr,
              flush=True)


def _readable(path: Path) -> bool:
    return path.suffix.lower() in TEXT_SUFFIXES or path.suffix.lower() in OPTIONAL_SUFFIXES


def read_text(path: Path) -> str:
    """The text of one file; a file too big, binary, or not UTF-8 is refused (DataError)."""
    suffix = path.suffix.lower()
    if suffix in OPTIONAL_SUFFIXES:
        if suffix == ".pdf":
            pypdf = _optional(path, "pypdf")
            text = "\n".join(page.extract_text() or "" for page in pypdf.PdfReader(path).pages)
        else:
            docx = _optional(path, "docx")
            text = "\n".join(p.text for p in docx.Document(str(path)).paragraphs)
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError as exc:  # a lone surrogate from the extractor
            raise DataError(path, f"extracted text holds U+{ord(text[exc.start]):04X}, which is "
                                  f"not a character", text[:exc.start].count("\n") + 1) from None
        if size > MAX_FILE_BYTES:
            raise DataError(path, f"its text is {size:,} bytes, over the {MAX_FILE_BYTES:,}-byte "
                                  f"limit for one file: split it")
        return text
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise DataError(path, f"{size:,} bytes, over the {MAX_FILE_BYTES:,}-byte limit for one "
                              f"file: split it")
    text = _decode(path)
    return _html_text(text) if suffix in (".html", ".htm") else text


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
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise DataError(path, f"not valid UTF-8 (byte 0x{raw[exc.start]:02x})", line) from None
    controls = _CONTROL.findall(text)
    if len(controls) > MAX_CONTROL_CHARS:
        first = _CONTROL.search(text).start()
        nuls = controls.count("\x00")
        hint = " (UTF-16? save it as UTF-8)" if 0.3 < nuls / len(text) < 0.6 else ""
        raise DataError(path, f"binary data, not text: {len(controls):,} NUL or control "
                              f"characters{hint}", text[:first].count("\n") + 1)
    return text


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


class Article(NamedTuple):
    """One unit of a statute file, as :func:`split_articles` finds it."""

    heading: str  # 第九十条; "" for text of a supplementary block before any article in it
    body: str
    block: str  # "" in the main provisions, else 附則 or 附則（平成…号）, ~2 … when repeated
    line: int  # of the heading (or block) line in the file, from 1
    amending_act: str = ""  # of a block 附則（平成一六年一二月一日法律第一四七号）: the part in brackets

    @property
    def name(self) -> str:
        """What the unit is called in its file: 第九十条, 附則第一条, 附則（…号）第一条, 附則."""
        return f"{self.block}{self.heading}"


def document_units(path: Path, relative: Path) -> Iterator[Document]:
    """Articles of a statute file, or overlapping passages of any other file."""
    text = read_text(path)
    source = relative.as_posix()
    folder = relative.parent.as_posix() if relative.parent != Path(".") else ""
    articles = split_articles(text)
    if sum(1 for a in articles if a.heading) >= MIN_ARTICLES:
        law = _law_name(text, path)
        names: set[str] = set()
        for position, article in enumerate(articles):
            if len(article.body) > MAX_DOCUMENT_CHARS:
                raise DataError(path, f"{article.name} is {len(article.body):,} "
                                      f"characters, over the {MAX_DOCUMENT_CHARS:,}-character "
                                      f"limit for one document", article.line)
            name = _unique(article.name, names)
            metadata = {"source": source, "folder": folder, "law": law, "position": position}
            if article.block:
                metadata["section"] = "附則"
            if article.amending_act:
                metadata["amending_act"] = article.amending_act
            title = " ".join(part for part in (law, article.block, article.heading) if part)
            yield Document(f"{source}#{name}", article.body, title, metadata)
        return
    called = (_markdown_title(text) if path.suffix.lower() == ".md" else None) or path.stem
    for position, passage in enumerate(split_passages(text)):
        yield Document(f"{source}#p{position}", passage, f"{called} ({position + 1})",
                       {"source": source, "folder": folder, "position": position})


def _markdown_title(text: str) -> str | None:
    """A Markdown file's first heading (``# 秘密保持契約``), when its first line is one and
    short enough to name it: what a person sees as the hit's title, rather than the file
    name (found in a new user's trial)."""
    for line in text.splitlines():
        if line.strip():
            heading = MARKDOWN_HEADING.match(line.strip())  # "#hashtag" is not one
            title = heading.group(1).strip() if heading else ""
            return title if 0 < len(title) <= MAX_TITLE_CHARS else None
    return None


def _unique(name: str, seen: set[str]) -> str:
    """``name``, or ``name~2``, ``name~3`` … when it is already taken (counted in file order,
    so the same file always gives the same names)."""
    candidate, count = name, 1
    while candidate in seen:
        count += 1
        candidate = f"{name}~{count}"
    seen.add(candidate)
    return candidate


def split_articles(text: str) -> list[Article]:
    """The articles of a statute text, in order, with the line each starts on.

    Text before the first article (the law's title, its table of contents) is not an article,
    nor are structure headings (第一章　総則). A caption line （…） just above a heading is the
    first line of that article. A line 附則 starts a block of supplementary provisions, whose
    articles restart at 第一条: their :attr:`Article.block` says which block.

    A heading alone on its line is ambiguous: in a file that puts every heading on a line of
    its own it is a heading, in one laid out 第一条　本文 (e-Gov) it is a cell of a table
    (読替表) inside an article. So it is taken only where such lines outnumber headings followed
    by text, and then only when it is in order (:func:`_ordered_lines`).
    """
    articles: list[Article] = []
    blocks: set[str] = set()
    block, act = "", ""
    current: tuple[str, int] | None = None  # heading and line of the unit being read
    lines: list[str] = []
    text_lines = [line.rstrip("\r") for line in text.split("\n")]
    ordered = _ordered_lines(text_lines)

    def close():
        if current is not None:
            body = "\n".join(lines).strip()
            if body:
                articles.append(Article(current[0], body, block, current[1], act))

    for number, line in enumerate(text_lines, start=1):
        match = ARTICLE_HEADING.match(line)
        rest = line[match.end("heading"):].strip(" \t\u3000") if match else ""
        if match and (rest or number in ordered):
            caption = lines.pop() if lines and CAPTION_LINE.match(lines[-1]) else None
            close()
            current = (match["heading"], number)
            lines = [caption.strip(" \t\u3000")] if caption else []
            lines.append(rest)
            continue
        if current is None:  # the title and table of contents (which may list 附則 too)
            lines = [line]  # only a caption just above the first heading is kept
            continue
        supplementary = SUPPLEMENTARY_HEADING.match(line)
        if supplementary:
            close()
            act = re.sub(r"[ \t\u3000]", "", supplementary["act"] or "")
            block = _unique(f"附則（{act}）" if act else "附則", blocks)
            current, lines = ("", number), []
        elif not STRUCTURE_HEADING.match(line):
            lines.append(line)
    close()
    return articles


def _ordered_lines(lines: list[str]) -> set[int]:
    """Numbers (from 1) of the lines holding a heading alone that are taken as articles: none
    unless such lines outnumber headings followed by text; else, between 附則 lines and
    restarts at 第一条, the longest run of them whose article numbers increase. A table cell
    naming another article is out of that order (or, named in order, indistinguishable)."""
    alone, inline, segments = [], 0, [[]]
    for number, line in enumerate(lines, start=1):
        match = ARTICLE_HEADING.match(line)
        if SUPPLEMENTARY_HEADING.match(line):
            segments.append([])
        elif match and line[match.end("heading"):].strip(" \t\u3000"):
            inline += 1
        elif match:
            key = _article_number(match["heading"])
            if key == (1,):
                segments.append([])
            segments[-1].append((key, number))
            alone.append(number)
    if len(alone) <= inline:
        return set()
    return {number for segment in segments for number in _longest_increasing(segment)}


def _longest_increasing(items: list[tuple[tuple[int, ...], int]]) -> list[int]:
    """Line numbers of a longest strictly increasing run of keys (patience sorting)."""
    tails: list[tuple[int, ...]] = []  # smallest last key of a run of each length
    ends: list[int] = []  # index into items of that run's last item
    before = [-1] * len(items)
    for index, (key, _) in enumerate(items):
        length = bisect.bisect_left(tails, key)
        before[index] = ends[length - 1] if length else -1
        if length == len(tails):
            tails.append(key)
            ends.append(index)
        else:
            tails[length], ends[length] = key, index
    run, index = [], ends[-1] if ends else -1
    while index >= 0:
        run.append(items[index][1])
        index = before[index]
    return run


_KANJI_DIGITS = {**{c: i for i, c in enumerate("〇一二三四五六七八九")}, "零": 0, "两": 2}
_KANJI_UNITS = {"十": 10, "百": 100, "千": 1000}


def _article_number(heading: str) -> tuple[int, ...]:
    """第百八十五条の七 → (185, 7); of a range 第三十八条から第八十四条まで, its last article."""
    last = re.split("から|及び", heading)[-1]
    return tuple(_numeral(n) for n in re.findall(_NUMERAL, last))


def _numeral(text: str) -> int:
    """``90``, ``９０``, ``九十``, ``一百零五``, ``一〇五`` as integers."""
    total = current = 0
    for char in text:
        if char in _KANJI_UNITS:
            total += (current or 1) * _KANJI_UNITS[char]
            current = 0
        else:
            digit = _KANJI_DIGITS.get(char)
            current = current * 10 + (int(char) if digit is None else digit)
    return total + current


def _law_name(text: str, path: Path) -> str:
    for line in text.splitlines():
        line = line.strip().lstrip("#").strip()
        if line:
            heading = ARTICLE_HEADING.match(line) or SUPPLEMENTARY_HEADING.match(line)
            return line if len(line) <= 40 and not heading else path.stem
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
