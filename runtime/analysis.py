"""Lexical analysis shared by indexing, querying, evaluation, training (BM25 negatives) and the
TUI's highlighting, so that every part splits text the same way.

Three analyzers, chosen per index and recorded in its manifest:

* ``ja`` — MeCab through fugashi with the IPADIC dictionary (the ``ipadic`` package, 51 MB).
  UniDic (``unidic-lite``, 249 MB) segments modern text slightly more consistently, but it would
  make the laptop install five times larger for a lexical signal that the dense model
  complements anyway; ``dictionary="unidic-lite"`` is accepted when that package is installed.
  Particles, auxiliary verbs, symbols and fillers are dropped (POS-based stopwords, as in
  2412.19265's BM25 baseline); conjugated words are reduced to their base form.
* ``zh`` — overlapping character bigrams plus single characters over runs of Han script; other
  runs (Latin words, numbers) become whole tokens. Bigrams are the strongest simple tokenizer on
  STARD (see ``../shared/data/stard/SOURCE.md``); unigrams keep one-character legal terms such
  as 罪 or 税 matchable.
* ``word`` — a Unicode word splitter (``\\w+``) for every other script.

All three apply NFKC normalisation and case folding first, so full-width digits and Latin
letters match their ASCII forms.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from functools import cached_property

from .errors import LexedgeError

_WORD = re.compile(r"\w+")
_HAN = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_HAN_RUN = re.compile(f"[{_HAN}]+")
_ZH_TOKENS = re.compile(f"[{_HAN}]+|[^\\W{_HAN}]+")
_KANA = re.compile(r"[\u3040-\u30ff]")
_HAN_CHAR = re.compile(f"[{_HAN}]")

# IPADIC / UniDic top-level parts of speech that carry no retrieval signal.
JA_STOP_POS = frozenset({"助詞", "助動詞", "記号", "補助記号", "フィラー", "空白", "BOS/EOS"})


def normalize(text: str) -> str:
    """NFKC then case folding: the one normalisation every analyzer applies."""
    return unicodedata.normalize("NFKC", text).casefold()


class Analyzer:
    """Turns text into index terms. Subclasses set ``name`` and implement :meth:`tokens`."""

    name = "base"

    def tokens(self, text: str) -> list[str]:
        raise NotImplementedError

    def to_manifest(self) -> dict:
        """What an index records so that queries are analysed exactly as its documents were."""
        return {"name": self.name}

    def __call__(self, text: str) -> list[str]:
        return self.tokens(text)


class WordAnalyzer(Analyzer):
    """Unicode word splitting for scripts written with spaces."""

    name = "word"

    def tokens(self, text: str) -> list[str]:
        return _WORD.findall(normalize(text))


class ChineseAnalyzer(Analyzer):
    """Character unigrams and bigrams over Han runs; whole tokens for other word runs."""

    name = "zh"

    def __init__(self, unigrams: bool = True):
        self.unigrams = unigrams

    def tokens(self, text: str) -> list[str]:
        terms: list[str] = []
        for run in _ZH_TOKENS.findall(normalize(text)):
            if not _HAN_RUN.fullmatch(run):
                terms.append(run)
                continue
            if self.unigrams or len(run) == 1:
                terms.extend(run)
            terms.extend(run[i:i + 2] for i in range(len(run) - 1))
        return terms

    def to_manifest(self) -> dict:
        return {"name": self.name, "unigrams": self.unigrams}


class JapaneseAnalyzer(Analyzer):
    """MeCab morphemes (fugashi) with POS-based stopwords and base forms."""

    name = "ja"

    def __init__(self, dictionary: str = "ipadic"):
        if dictionary not in ("ipadic", "unidic-lite"):
            raise LexedgeError(f"unknown Japanese dictionary {dictionary!r} "
                               "(choose ipadic or unidic-lite)")
        self.dictionary = dictionary

    @cached_property
    def _tagger(self):
        try:
            import fugashi
            if self.dictionary == "ipadic":
                import ipadic
                return fugashi.GenericTagger(ipadic.MECAB_ARGS)
            import unidic_lite  # noqa: F401  (fugashi finds it by itself)
            return fugashi.Tagger()
        except ImportError as exc:
            raise LexedgeError(f"the Japanese analyzer needs {exc.name}: "
                               f"pip install fugashi {self.dictionary}") from None

    def tokens(self, text: str) -> list[str]:
        text = normalize(text)
        return self._ipadic_tokens(text) if self.dictionary == "ipadic" \
            else self._word_tokens(text)

    def _word_tokens(self, text: str) -> list[str]:
        """The terms read from fugashi's word objects: unidic-lite's way (its lemma is a named
        field), and the reference :meth:`_ipadic_tokens` must equal."""
        terms: list[str] = []
        for word in self._tagger(text):
            feature = word.feature
            pos = feature[0]
            if pos in JA_STOP_POS:
                continue
            if self.dictionary == "ipadic":
                base = feature[6] if len(feature) > 6 else "*"
            else:
                base = getattr(feature, "lemma", None) or "*"
            if pos in ("動詞", "形容詞") and base not in ("*", ""):
                terms.append(base)
            else:
                terms.append(word.surface)
        return terms

    def _ipadic_tokens(self, text: str) -> list[str]:
        """The same terms as :meth:`_word_tokens`, from MeCab's own text output
        (``surface TAB pos,…,base,…`` a line, then ``EOS``) split here: fugashi makes each
        word's features a Python tuple, which took half the time. 2,000 ja_appi articles: 1.62
        -> 0.85 s; the same terms for every ja_statutes article, ja_appi query and title."""
        terms: list[str] = []
        for line in self._tagger.parse(text).split("\n"):
            if not line or line == "EOS":
                continue
            surface, _, features = line.partition("\t")
            feature = features.split(",")
            pos = feature[0]
            if pos in JA_STOP_POS:
                continue
            base = feature[6] if len(feature) > 6 else "*"
            terms.append(base if pos in ("動詞", "形容詞") and base not in ("*", "")
                         else surface)
        return terms

    def to_manifest(self) -> dict:
        return {"name": self.name, "dictionary": self.dictionary}


ANALYZERS = {"ja": JapaneseAnalyzer, "zh": ChineseAnalyzer, "word": WordAnalyzer}


def get_analyzer(spec: str | dict) -> Analyzer:
    """Build an analyzer from its name (``"ja"``) or from an index manifest's record."""
    if isinstance(spec, str):
        spec = {"name": spec}
    options = dict(spec)
    name = options.pop("name", None)
    if name not in ANALYZERS:
        raise LexedgeError(f"unknown analyzer {name!r} (choose one of: {', '.join(ANALYZERS)})")
    return ANALYZERS[name](**options)


def detect_language(texts: Iterable[str], sample_chars: int = 200_000) -> str:
    """Guess ``ja``, ``zh`` or ``word`` from a sample of the corpus.

    Kana anywhere in a meaningful share of the text means Japanese (Japanese statutes are mostly
    kanji, so a Han majority alone does not mean Chinese).
    """
    kana = han = letters = 0
    for text in texts:
        kana += len(_KANA.findall(text))
        han += len(_HAN_CHAR.findall(text))
        letters += sum(ch.isalpha() for ch in text)
        if letters >= sample_chars:
            break
    if letters == 0:
        return "word"
    if kana / letters >= 0.05:
        return "ja"
    if han / letters >= 0.3:
        return "zh"
    return "word"
