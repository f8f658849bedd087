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


def _settings_body(settings: SearchSettings | None) -> dict:
    """The settings a search gives; ``None`` ones are left to the service (its bundle's)."""
    if settings is None:
        return {}
    return {k: v for k, v in settings.to_dict().items() if v is not None}


def _result(answer: dict) -> SearchResult:
    return SearchResult(answer["query"], [Hit(**hit) for hit in answer["hits"]],
                        answer["timings_ms"], answer["settings"])

