"""A model bundle: what ``lexedge export`` writes and what the laptop loads.

Layout::

    BUNDLE/manifest.json            how it was made, settings, parity numbers, file hashes
    BUNDLE/embedder.onnx            text -> sentence_embedding [batch, dim] (pooled, unit length)
    BUNDLE/embedder.tokenizer.json
    BUNDLE/reranker.onnx            optional: (query, passage) -> logits [batch], or, with
                                    reranker.kind "late_interaction", text -> token_states
                                    [batch, seq, dim] and token_weights [batch, seq]
    BUNDLE/reranker.tokenizer.json

Every file but the manifest is listed in ``manifest["files"]`` with its sha256; loading checks
them all, so a truncated copy or an edited model is refused before it can give wrong answers.
The manifest carries a hash of its own content (``manifest_sha256``, see
:func:`manifest_sha256`), so an edited setting (the reranker's ``max_length``, its
``rerank_weight``) or a model swapped together with its entry in ``files`` is refused as well
(issue 20, finding 7). That hash guards against damage and casual edits, not against someone
who recomputes it: there is no key. :func:`write_manifest` is the one writer of the file.
An index records the hash of ``manifest.json`` (:attr:`Bundle.sha256`) to stay bound to the
bundle whose vectors it holds.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .builtin import bundle_location, is_builtin
from .errors import LexedgeError
from .onnx_models import OnnxEmbedder, OnnxLateInteraction, OnnxReranker, SharedTokenizer
from .storage import MANIFEST_HASH_FIELD, manifest_sha256, read_manifest, sha256_file

MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 1
REEXPORT = "re-export the bundle with `lexedge export ...`"


def write_manifest(folder: str | Path, manifest: dict) -> Path:
    """Write ``folder/manifest.json`` with its :data:`MANIFEST_HASH_FIELD` (the exporter and
    the test bundles both write through here, so every bundle written loads)."""
    # Hash what a reader will parse: JSON turns tuples into lists and keys into strings.
    content = json.loads(json.dumps(manifest, ensure_ascii=False))
    content[MANIFEST_HASH_FIELD] = manifest_sha256(content)
    path = Path(folder) / MANIFEST_FILE
    path.write_text(json.dumps(content, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return path


class Bundle:
    """An exported embedder (and optional reranker) with its manifest.

    Example:
        >>> bundle = Bundle.load("models/bundle")  # doctest: +SKIP
        >>> vectors = bundle.embedder().encode(["民法 第九十条"], kind="query")  # doctest: +SKIP
    """

    def __init__(self, path: Path, manifest: dict, sha256: str):
        self.path, self.manifest, self.sha256 = path, manifest, sha256
        self._models: dict = {}
        self._tokenizers: dict = {}

    @classmethod
    def load(cls, path: str | Path, verify: bool = True) -> "Bundle":
        """Read ``path/manifest.json`` and check its own hash; with ``verify`` check every
        listed file's sha256 too.

        ``path`` may be the name ``"builtin"``: the bundle shipped in the package
        (:mod:`lexedge.runtime.builtin`).

        Raises:
            LexedgeError: one line naming the missing, malformed, changed or absent file.
        """
        path = bundle_location(path)
        manifest_path = path / MANIFEST_FILE
        manifest = read_manifest(path, "bundle", FORMAT_VERSION,
                                 "make one with `lexedge export`")
        recorded = manifest.get(MANIFEST_HASH_FIELD)
        if recorded is None:
            raise LexedgeError(f"{manifest_path}: no {MANIFEST_HASH_FIELD} (written by an older "
                               f"lexedge, or edited); {REEXPORT}")
        if recorded != manifest_sha256(manifest):
            raise LexedgeError(f"{manifest_path}: {MANIFEST_HASH_FIELD} does not match its "
                               f"content (the manifest was edited or damaged); {REEXPORT}")
        for section in ("embedder", "files"):
            if not isinstance(manifest.get(section), dict):
                raise LexedgeError(f"{manifest_path}: missing {section!r} section")
        for section in ("embedder", "reranker"):
            entry = manifest.get(section)
            for field in ("file", "tokenizer") if entry else ():
                if entry.get(field) not in manifest["files"]:
                    raise LexedgeError(f"{manifest_path}: {section}.{field} "
                                       f"{entry.get(field)!r} is not listed in 'files'")
        bundle = cls(path, manifest, sha256_file(manifest_path))
        if verify:
            bundle.verify()
        return bundle

    def verify(self) -> None:
        """Check that every file in the manifest exists and still has its recorded sha256."""
        for name, expected in self.manifest["files"].items():
            if Path(name).name != name or name in (".", ".."):
                raise LexedgeError(f"{self.path / MANIFEST_FILE}: file name {name!r} points "
                                   "outside the bundle")
            file = self.path / name
            if not file.is_file():
                raise LexedgeError(f"{file}: missing from the bundle")
            if sha256_file(file) != expected:
                raise LexedgeError(f"{file}: sha256 mismatch (file changed or corrupted)")

    @property
    def embedder_id(self) -> str:
        """A hash of what decides the vectors: the embedder's files and its encoding settings.

        An index is bound to this rather than to the whole bundle, so adding or swapping the
        reranker does not force re-embedding the corpus.
        """
        return self._model_id("embedder", ("pooling", "normalize", "query_prefix",
                                           "passage_prefix", "max_length", "dimension",
                                           "output"))

    @property
    def reranker_id(self) -> str | None:
        """A hash of what decides a late-interaction reranker's passage states: its files and
        settings (an index's stored states are bound to it); ``None`` without a reranker."""
        if not self.has_reranker:
            return None
        return self._model_id("reranker", ("kind", "passage_prefix", "output", "dimension",
                                           "max_length"))

    def _model_id(self, section: str, settings: tuple[str, ...]) -> str:
        """A hash of a model's files and the ``settings`` of its manifest section."""
        entry = self.manifest[section]
        identity = {"files": [self.manifest["files"][entry[name]] for name in ("file", "tokenizer")],
                    "settings": {key: entry.get(key) for key in settings}}
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()

    def passage_tokens(self, analyzer: str | None) -> int | None:
        """The tokens of each passage a late-interaction reranker reads for an index whose
        analyzer is ``analyzer``: the length chosen on dev for that language (``lexedge
        late-interaction``), else the manifest's default; ``None`` for a cross-encoder or no
        reranker.

        Raises:
            LexedgeError: one line, when the recorded length is out of the model's reach.
        """
        reranker = self.reranker()
        if not isinstance(reranker, OnnxLateInteraction):
            return None
        cap = (self.manifest["reranker"].get("passage_max_length_by_analyzer") or {}).get(
            analyzer)
        if cap is None:
            return reranker.passage_max_length
        if type(cap) is not int or not 1 <= cap <= reranker.max_length:
            raise LexedgeError(f"{self.path / MANIFEST_FILE}: reranker."
                               f"passage_max_length_by_analyzer.{analyzer} must be a whole "
                               f"number of tokens within 1-{reranker.max_length}, got {cap!r}")
        return cap

    @property
    def reference(self) -> str:
        """How an index records this bundle: ``builtin`` for the built-in one (it moves with
        the package), else its absolute path."""
        return "builtin" if is_builtin(self.path) else str(Path(self.path).resolve())

    @property
    def has_reranker(self) -> bool:
        return bool(self.manifest.get("reranker"))

    def embedder(self, threads: int | None = None, providers: tuple[str, ...] | None = None,
                 bulk: bool = False) -> OnnxEmbedder:
        """The embedding model (one per thread count, providers and ``bulk``, kept);
        ``providers``: onnxruntime execution providers by preference (``("cuda",)``), the
        CPU always last. ``bulk``: for encoding a corpus (an index build, a vector shard),
        every batch on the one-thread session of a worker per core, and only that session
        in memory."""
        return self._model("embedder", OnnxEmbedder, threads, providers, bulk)

    def reranker(self, threads: int | None = None
                 ) -> OnnxReranker | OnnxLateInteraction | None:
        """The reranker: a cross-encoder, or a late-interaction model when the manifest's
        ``reranker.kind`` says so; ``None`` when the bundle has none."""
        if not self.has_reranker:
            return None
        kind = self.manifest["reranker"].get("kind", "cross_encoder")
        if kind not in ("cross_encoder", OnnxLateInteraction.KIND):
            raise LexedgeError(f"{self.path / MANIFEST_FILE}: reranker kind {kind!r} is not "
                               "one this lexedge knows (cross_encoder, late_interaction)")
        return self._model("reranker", OnnxLateInteraction if kind == OnnxLateInteraction.KIND
                           else OnnxReranker, threads)

    def _model(self, section: str, model_class, threads: int | None,
               providers: tuple[str, ...] | None = None, bulk: bool = False):
        key = (section, threads, tuple(providers or ()), bulk)
        if key not in self._models:
            entry = self.manifest[section]
            # Models whose tokenizer files are identical share one loaded tokenizer.
            digest = self.manifest["files"][entry["tokenizer"]]
            if digest not in self._tokenizers:
                self._tokenizers[digest] = SharedTokenizer(self.path / entry["tokenizer"])
            self._models[key] = model_class(self.path / entry["file"], self._tokenizers[digest],
                                            entry, threads, providers, bulk)
        return self._models[key]

    def __repr__(self) -> str:
        parts = ["embedder"] + (["reranker"] if self.has_reranker else [])
        return f"Bundle({str(self.path)!r}, {'+'.join(parts)}, sha256={self.sha256[:12]})"
