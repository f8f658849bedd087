"""``lexedge serve``: one office search service over one index, for several applications and
users (issue 22; 2602.00805's shared retrieval backbone: one embedder + reranker pair loaded
once, serving everyone).

The service is a Starlette app under uvicorn (the ``[serve]`` extra; this module is imported
only by the ``serve`` command, so no other command loads a network stack). It loads the index and
its bundle once, answers JSON, and follows the index: when ``lexedge index update`` (or a
rebuild) replaces the folder, a watcher loads the new version beside the old one and swaps a
single reference, so a request is answered wholly by one version and none fails during the
swap.

Safe by default: it listens on loopback unless ``--host`` says otherwise, and then a bearer
token is required (read from ``--token-file`` or ``LEXEDGE_TOKEN``, never from the command
line, where ``ps`` would show it). Bodies, queries, ``top``, ``budget``, ``rerank`` and batch
sizes are bounded; a search that runs past the timeout answers 503. No path in a request is
ever opened: documents are fetched by id from the index.

Endpoints (``GET /openapi.json`` describes them)::

    GET  /health            {"status": "ok", "documents": N}
    GET  /info              the index manifest's summary and the bundle's ``bundle info``
    POST /search            {"query": ..., "budget": ..., ...} -> as ``lexedge search --json``
    POST /search/batch      {"queries": [...], ...settings}  -> {"results": [...]}
    GET  /documents/{id}    {"id", "title", "text", "metadata", "row"}
    POST /documents         {"documents": [records]}: add or replace (admin token)
    DELETE /documents/{id}  remove one (admin token)
    GET  /rows/{n}          the document at row n of the store (the TUI's neighbours)

Errors are JSON ``{"error": "one line"}`` with the CLI's messages.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.routing import Route

from .builtin import describe
from .datasets import as_documents
from .errors import LexedgeError
from .index import Index
from .searcher import Searcher
from .service_token import ADMIN_TOKEN_ENV, TOKEN_ENV, read_token
from .settings import SearchSettings

#: The settings a request may give (the same names as ``SearchSettings``).
SETTING_NAMES = ("budget", "pool", "rerank", "rerank_weight", "rerank_tokens", "alpha", "fusion",
                 "top", "filters")


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; larger asks get 413 (body) or 422 (values)."""

    max_body_bytes: int = 64 * 1024
    max_top: int = 100
    max_budget: int = 1_000
    max_pool: int = 10
    max_rerank: int = 100
    max_batch: int = 32
    timeout_seconds: float = 30.0
    workers: int = 4  # searches run at once; the rest wait


class RequestError(Exception):
    """A refusal: its HTTP status and the one-line message the client sees."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class IndexService:
    """The index as the service sees it: one :class:`Searcher` at a time, swapped whole when
    the folder is replaced on disk.

    Args:
        index: the index folder.
        bundle: a bundle overriding the recorded one (as ``lexedge search --bundle``).
        poll_seconds: how often the watcher looks for a new version of the index.
    """

    def __init__(self, index: str | Path, bundle=None, poll_seconds: float = 1.0):
        self.path = Path(index)
        self._bundle = bundle
        self.searcher = Searcher(self.path, bundle=bundle, follow=False)
        self.swaps = 0
        self._reloading = threading.Lock()
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch, args=(poll_seconds,),
                                         name="lexedge-index-watcher", daemon=True)

    def start(self) -> None:
        self._watcher.start()

    def stop(self) -> None:
        self._stop.set()

    def reload_if_replaced(self) -> bool:
        """Load the index's new version, if there is one, and swap it in; whether it did.
        The watcher and the write endpoints both call it: one at a time."""
        with self._reloading:
            current = self.searcher
            try:
                fresh = current.index.current()
            except LexedgeError:  # rebuilt with another bundle: load what it records
                fresh = Index.load(self.path, bundle=self._bundle)
            if fresh is current.index:
                return False
            # reading the new version took a while; until now every request used the old one
            self.searcher = Searcher(fresh, follow=False)
            self.swaps += 1
            return True

    def _watch(self, poll_seconds: float) -> None:
        while not self._stop.wait(poll_seconds):
            try:
                self.reload_if_replaced()
            except LexedgeError:
                continue  # half-replaced or refused: keep serving the old version, retry

    def info(self) -> dict:
        searcher = self.searcher
        index = searcher.index
        manifest = index.manifest
        bundle = index.bundle
        return {"documents": len(index.docs) - len(index.deleted),
                "rows": len(index.docs), "deleted_rows": sorted(index.deleted),
                "manifest": {k: v for k, v in manifest.items() if k != "files"},
                "analyzer": manifest.get("analyzer"), "dense": searcher.has_dense,
                "reranker": searcher.has_reranker, "alpha": searcher.alpha,
                "source": manifest.get("source"), "provenance": manifest.get("provenance"),
                "bundle": describe(bundle) if bundle is not None else None,
                "swaps": self.swaps}


def settings_from(body: dict, limits: Limits) -> SearchSettings:
    """The request's search settings, checked as ``SearchSettings`` checks them, then bounded
    by the service's limits."""
    unknown = sorted(set(body) - set(SETTING_NAMES) - {"query", "queries"})
    if unknown:
        raise RequestError(422, f"unknown field {unknown[0]!r}: expected query or queries, "
                                f"{', '.join(SETTING_NAMES)}")
    try:
        settings = SearchSettings(**{k: body[k] for k in SETTING_NAMES if k in body})
    except LexedgeError as error:
        raise RequestError(422, str(error)) from None
    for name, most in (("top", limits.max_top), ("budget", limits.max_budget),
                       ("pool", limits.max_pool), ("rerank", limits.max_rerank)):
        if getattr(settings, name) > most:
            raise RequestError(422, f"{name} {getattr(settings, name)}: this service answers "
                                    f"at most {most}")
    return settings


def result_dict(result) -> dict:
    """A search result as ``lexedge search --json`` prints it."""
    return {"query": result.query, "settings": result.settings,
            "timings_ms": result.timings_ms, "hits": [hit.to_dict() for hit in result.hits]}


def document_dict(index, row: int) -> dict:
    found = index.docs.get(row)
    return {"id": found.id, "title": found.title, "text": found.text,
            "metadata": found.metadata, "row": row}


def _query(value, field: str) -> str:
    if not isinstance(value, str):
        raise RequestError(422, f"{field}: expected a string")
    return value


def create_app(service: IndexService, token: str | None = None, limits: Limits = Limits(),
               admin_token: str | None = None):
    """The Starlette application answering for ``service``.

    Args:
        service: the index to serve.
        token: the bearer token every request must carry (``None``: no token; only for a
            loopback service, which :func:`serve` enforces).
        limits: the bounds of a request.
        admin_token: the token of the write endpoints (``POST /documents`` adds or replaces,
            ``DELETE /documents/{id}`` removes); ``None``: writes are off (403).
    """
    limiter = anyio.CapacityLimiter(limits.workers)
    writer = anyio.CapacityLimiter(1)  # the index's lock orders writers; one thread waits

    def refusal(status: int, message: str) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    def bearer(request) -> str:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        return value.strip() if scheme.lower() == "bearer" else ""

    def authorised(request) -> bool:
        if token is None:
            return True
        return hmac.compare_digest(bearer(request).encode(), token.encode()) or (
            admin_token is not None
            and hmac.compare_digest(bearer(request).encode(), admin_token.encode()))

    def admin(request) -> None:
        if admin_token is None:
            raise RequestError(403, "writes are off: start lexedge serve with "
                                    "--admin-token-file to allow them")
        if not hmac.compare_digest(bearer(request).encode(), admin_token.encode()):
            raise RequestError(401, "writes need the admin token")

    async def body_of(request) -> dict:
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit()
                                     or int(declared) > limits.max_body_bytes):
            raise RequestError(413, f"request body over {limits.max_body_bytes} bytes")
        raw = bytearray()
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > limits.max_body_bytes:
                raise RequestError(413, f"request body over {limits.max_body_bytes} bytes")
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise RequestError(400, f"request body: not JSON ({error})") from None
        if not isinstance(body, dict):
            raise RequestError(400, "request body: expected a JSON object")
        return body

    async def run(function, *args, limiter=limiter):
        try:
            with anyio.fail_after(limits.timeout_seconds):
                return await anyio.to_thread.run_sync(function, *args, limiter=limiter,
                                                      abandon_on_cancel=True)
        except TimeoutError:
            raise RequestError(503, f"the search took over {limits.timeout_seconds:g} s; "
                                    "try a smaller budget or rerank") from None

    def endpoint(handler, public: bool = False):
        async def answer(request):
            if not public and not authorised(request):
                return refusal(401, "missing or wrong bearer token")
            try:
                return JSONResponse(await handler(request))
            except RequestError as error:
                return refusal(error.status, str(error))
            except LexedgeError as error:
                return refusal(422, str(error))
        return answer

    async def health(request):
        searcher = service.searcher
        return {"status": "ok", "documents": len(searcher.index.docs)
                - len(searcher.index.deleted)}

    async def info(request):
        return await run(service.info)

    async def search(request):
        body = await body_of(request)
        settings = settings_from(body, limits)
        query = _query(body.get("query"), "query")
        searcher = service.searcher  # one version for the whole request
        return result_dict(await run(searcher.search, query, settings))

    async def search_batch(request):
        body = await body_of(request)
        settings = settings_from(body, limits)
        queries = body.get("queries")
        if not isinstance(queries, list) or not queries:
            raise RequestError(422, "queries: expected a non-empty list of strings")
        if len(queries) > limits.max_batch:
            raise RequestError(422, f"queries: {len(queries)} given, this service answers at "
                                    f"most {limits.max_batch} at once")
        queries = [_query(q, f"queries[{i}]") for i, q in enumerate(queries)]
        searcher = service.searcher

        def answer_all():
            return [result_dict(searcher.search(q, settings)) for q in queries]
        return {"results": await run(answer_all)}

    async def document(request):
        doc_id = request.path_params["doc_id"]
        index = service.searcher.index
        try:
            row = index.row_of(doc_id)
        except KeyError:
            raise RequestError(404, f"no document with id {doc_id!r}") from None
        return document_dict(index, row)

    async def row(request):
        """The document store's row N (the TUI's neighbouring articles come from rows)."""
        index, number = service.searcher.index, request.path_params["row"]
        if not 0 <= number < len(index.docs) or number in index.deleted:
            raise RequestError(404, f"no document at row {number}")
        return document_dict(index, number)

    async def add_documents(request):
        admin(request)
        body = await body_of(request)
        records = body.get("documents")
        if set(body) != {"documents"} or not isinstance(records, list) or not records:
            raise RequestError(422, "expected {\"documents\": [{\"id\": …, \"text\": …}, …]}")
        documents = as_documents(records)  # a bad record is named by its position

        def write():
            changed = service.searcher.index.add(documents)
            service.reload_if_replaced()
            return {"added_or_replaced": len(documents), "documents": len(changed)}
        return await run(write, limiter=writer)

    async def remove_document(request):
        admin(request)
        doc_id = request.path_params["doc_id"]

        def write():
            changed = service.searcher.index.remove([doc_id])
            service.reload_if_replaced()
            return {"removed": 1, "documents": len(changed)}
        try:
            return await run(write, limiter=writer)
        except LexedgeError as error:
            if "no document with id" in str(error):
                raise RequestError(404, f"no document with id {doc_id!r}") from None
            raise

    async def openapi(request):
        return openapi_schema(limits)

    async def not_found(request, error):
        return refusal(error.status_code, f"{request.url.path}: {error.detail}")

    routes = [Route("/health", endpoint(health, public=token is None)),
              Route("/info", endpoint(info)),
              Route("/search", endpoint(search), methods=["POST"]),
              Route("/search/batch", endpoint(search_batch), methods=["POST"]),
              Route("/documents", endpoint(add_documents), methods=["POST"]),
              Route("/documents/{doc_id:path}", endpoint(document), methods=["GET"]),
              Route("/documents/{doc_id:path}", endpoint(remove_document), methods=["DELETE"]),
              Route("/rows/{row:int}", endpoint(row)),
              Route("/openapi.json", endpoint(openapi))]
    return Starlette(routes=routes, exception_handlers={HTTPException: not_found})


def openapi_schema(limits: Limits) -> dict:
    """The API's OpenAPI 3.1 description (written here: Starlette generates none without
    docstring YAML, and the bounds are this service's)."""
    settings = {
        "budget": {"type": "integer", "minimum": 1, "maximum": limits.max_budget},
        "pool": {"type": "integer", "minimum": 1, "maximum": limits.max_pool},
        "rerank": {"type": "integer", "minimum": 0, "maximum": limits.max_rerank},
        "rerank_weight": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
        "rerank_tokens": {"type": ["integer", "null"], "minimum": 1},
        "alpha": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
        "fusion": {"enum": ["weighted", "rrf"]},
        "top": {"type": "integer", "minimum": 1, "maximum": limits.max_top},
        "filters": {"type": "object", "additionalProperties": {"type": "string"}}}
    error = {"description": "refused", "content": {"application/json": {"schema": {
        "type": "object", "properties": {"error": {"type": "string"}}}}}}
    result = {"type": "object", "properties": {
        "query": {"type": "string"}, "settings": {"type": "object"},
        "timings_ms": {"type": "object"}, "hits": {"type": "array", "items": {
            "type": "object", "properties": {name: {} for name in (
                "rank", "id", "title", "text", "snippet", "score", "scores",
                "matched_terms", "metadata")}}}}}

    def post(schema, answer):
        return {"post": {"requestBody": {"required": True, "content": {"application/json": {
            "schema": schema}}}, "responses": {"200": {"description": "answer", "content": {
                "application/json": {"schema": answer}}}, "401": error, "413": error,
                "422": error, "503": error}}}

    def get(answer):
        return {"get": {"responses": {"200": {"description": "answer", "content": {
            "application/json": {"schema": answer}}}, "401": error, "404": error}}}
    return {
        "openapi": "3.1.0", "info": {"title": "lexedge search service", "version": "1"},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": {
            "/search": post({"type": "object", "required": ["query"], "properties": {
                "query": {"type": "string", "maxLength": 2000}, **settings},
                "additionalProperties": False}, result),
            "/search/batch": post({"type": "object", "required": ["queries"], "properties": {
                "queries": {"type": "array", "items": {"type": "string"},
                            "maxItems": limits.max_batch}, **settings},
                "additionalProperties": False}, {"type": "object", "properties": {
                    "results": {"type": "array", "items": result}}}),
            "/documents": post({"type": "object", "required": ["documents"], "properties": {
                "documents": {"type": "array", "items": {
                    "type": "object", "required": ["id", "text"]}}}},
                {"type": "object"}),
            "/documents/{doc_id}": {**get({"type": "object"}), "delete": {"responses": {
                "200": {"description": "removed"}, "401": error, "403": error,
                "404": error}}},
            "/rows/{row}": get({"type": "object"}),
            "/info": get({"type": "object"}), "/health": get({"type": "object"}),
            "/openapi.json": get({"type": "object"})}}


def serve(index: Path, host: str = "127.0.0.1", port: int = 8765,
          token_file: Path | None = None, bundle=None, limits: Limits = Limits(),
          ready=None, admin_token_file: Path | None = None) -> None:
    """Run the service until interrupted (the ``lexedge serve`` command).

    Raises:
        LexedgeError: a host other than loopback with no token, an unreadable token file, or
            an index that does not load.
    """
    token = read_token(token_file)
    if token is None and not is_loopback(host):
        raise LexedgeError(f"--host {host}: other machines can reach it, so a token is "
                           f"required (--token-file FILE or {TOKEN_ENV})")
    admin_token = read_token(admin_token_file, env=ADMIN_TOKEN_ENV)
    if admin_token is not None and admin_token == token:
        raise LexedgeError("the admin token must differ from the search token")
    service = IndexService(index, bundle=bundle)
    service.start()
    config = uvicorn.Config(create_app(service, token, limits, admin_token), host=host,
                            port=port,
                            log_level="warning", timeout_keep_alive=5,
                            limit_concurrency=256)
    server = uvicorn.Server(config)
    if ready is not None:
        ready(server)
    started = time.perf_counter()
    print(f"lexedge serve: {index} on http://{host}:{port} "
          f"({'token required' if token else 'no token: loopback only'}); Ctrl-C stops",
          flush=True)
    try:
        server.run()
    finally:
        service.stop()
        print(f"lexedge serve: stopped after {time.perf_counter() - started:.0f} s", flush=True)
