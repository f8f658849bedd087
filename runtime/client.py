"""A client of ``lexedge serve`` (issue 22): ``lexedge search --server URL`` and Python code
search a running service instead of a local index, with the same settings and results.

Only the standard library's ``urllib``: a client needs no extra, and a local search never
imports this module (it is the one runtime module besides ``serve`` that opens a socket).

Example::

    client = ServiceClient("http://127.0.0.1:8765", token="…")
    result = client.search("解雇の予告", SearchSettings(budget=100, rerank=20))
    for hit in result.hits:
        print(hit.rank, hit.title)
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

from .datasets import Document
from .errors import LexedgeError
from .searcher import Hit, SearchResult
from .service_token import TOKEN_ENV, read_token
from .settings import SearchSettings


class ServiceClient:
    """Talks to one ``lexedge serve``.

    Args:
        url: the service, e.g. ``http://127.0.0.1:8765``.
        token: its bearer token; default: ``token_file``'s first line, else ``LEXEDGE_TOKEN``.
        token_file: a file holding the token.
        timeout: seconds to wait for an answer.
    """

    def __init__(self, url: str, token: str | None = None, token_file: Path | None = None,
                 timeout: float = 60.0):
        if not url.startswith(("http://", "https://")):
            raise LexedgeError(f"--server {url}: expected an http:// or https:// URL")
        self.url = url.rstrip("/")
        self.token = token if token is not None else read_token(token_file)
        self.timeout = timeout

    def search(self, query: str, settings: SearchSettings | None = None) -> SearchResult:
        body = {"query": query, **_settings_body(settings)}
        return _result(self._call("POST", "/search", body))

    def search_many(self, queries: list[str],
                    settings: SearchSettings | None = None) -> list[SearchResult]:
        body = {"queries": list(queries), **_settings_body(settings)}
        return [_result(r) for r in self._call("POST", "/search/batch", body)["results"]]

    def document(self, doc_id: str) -> dict:
        return self._call("GET", "/documents/" + urllib.request.quote(doc_id, safe=""))

    def info(self) -> dict:
        return self._call("GET", "/info")

    def row(self, number: int) -> dict:
        return self._call("GET", f"/rows/{int(number)}")

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                return json.loads(answer.read().decode("utf-8"))
        except urllib.error.HTTPError as error:
            try:
                message = json.loads(error.read().decode("utf-8"))["error"]
            except (ValueError, KeyError, TypeError):
                message = error.reason
            hint = f" (give its token: --token-file or {TOKEN_ENV})" \
                if error.code == 401 and not self.token else ""
            raise LexedgeError(f"{self.url}: {error.code} {message}{hint}") from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise LexedgeError(f"{self.url}: cannot reach the service ({reason})") from None


class RemoteSearcher:
    """A :class:`~lexedge.runtime.searcher.Searcher` whose index lives in a ``lexedge serve``:
    what ``lexedge tui --server URL`` searches with. The service follows its index, so this
    one never reloads anything itself.

    Args:
        client: the service.
    """

    follow = False

    def __init__(self, client: ServiceClient):
        self.client = client
        info = client.info()
        self.index = RemoteIndex(client, info)
        self.alpha = info["alpha"]
        self.has_dense, self.has_reranker = info["dense"], info["reranker"]

    def search(self, query: str, settings: SearchSettings | None = None) -> SearchResult:
        return self.client.search(query, settings)

    def refresh(self) -> bool:
        return False


class RemoteIndex:
    """What the TUI reads of an index, answered by the service: its manifest, size, rows
    (fetched once each) and bundle's description."""

    def __init__(self, client: ServiceClient, info: dict):
        self.client, self.path = client, client.url
        self.manifest = info["manifest"]
        self.deleted = set(info["deleted_rows"])
        self.documents = info["documents"]
        self.docs = _RemoteRows(client, info["rows"])
        self.bundle = _RemoteBundle(info["bundle"]) if info["bundle"] else None

    def __len__(self) -> int:
        return self.documents

    def row_of(self, doc_id: str) -> int:
        return self.docs.row_of(doc_id)

    def document(self, doc_id: str) -> Document:
        return self.docs.get(self.row_of(doc_id))


class _RemoteRows:
    def __init__(self, client: ServiceClient, rows: int):
        self.client, self.rows = client, rows
        self._cache: dict[int, Document] = {}
        self._row_of: dict[str, int] = {}

    def __len__(self) -> int:
        return self.rows

    def get(self, row: int) -> Document:
        if row not in self._cache:
            try:
                self._keep(self.client.row(row))
            except LexedgeError as error:  # gone since, or the service is: as a missing row
                raise IndexError(row) from error
        return self._cache[row]

    def row_of(self, doc_id: str) -> int:
        if doc_id not in self._row_of:
            try:
                self._keep(self.client.document(doc_id))
            except LexedgeError as error:
                raise KeyError(doc_id) from error
        return self._row_of[doc_id]

    def _keep(self, answer: dict) -> None:
        document = Document(answer["id"], answer["text"], answer["title"], answer["metadata"])
        self._cache[answer["row"]] = document
        self._row_of[document.id] = answer["row"]


class _RemoteBundle:
    """The served bundle as the TUI's status line names it."""

    def __init__(self, described: dict):
        self.manifest = {"name": described.get("name")}
        self.path = described.get("path")
        self.sha256 = described.get("sha256") or ""


def _settings_body(settings: SearchSettings | None) -> dict:
    """The settings a search gives; ``None`` ones are left to the service (its bundle's)."""
    if settings is None:
        return {}
    return {k: v for k, v in settings.to_dict().items() if v is not None}


def _result(answer: dict) -> SearchResult:
    return SearchResult(answer["query"], [Hit(**hit) for hit in answer["hits"]],
                        answer["timings_ms"], answer["settings"])

