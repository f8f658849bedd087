"""``lexedge serve`` (issue 22): a real server on 127.0.0.1, started by the test, answers as the
local Searcher does; refuses what it must with the right status and message; and swaps to a
new version of its index under concurrent load with no failed request."""

import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from lexedge.cli import main  # noqa: E402
from lexedge.runtime.bundle import Bundle  # noqa: E402
from lexedge.runtime.client import ServiceClient  # noqa: E402
from lexedge.runtime.datasets import Document  # noqa: E402
from lexedge.runtime.errors import LexedgeError  # noqa: E402
from lexedge.runtime.index import Index  # noqa: E402
from lexedge.runtime.searcher import Searcher  # noqa: E402
from lexedge.runtime.serve import Limits, serve  # noqa: E402
from lexedge.runtime.settings import SearchSettings  # noqa: E402
from support.service import running  # noqa: E402

QUERY = "本人の同意なしに個人データを第三者へ提供できますか"


def call(url, path, body=None, token=None, raw=None, method=None):
    """(status, JSON answer) of one request."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(url + path, data=data,
                                     method=method or ("POST" if data is not None else "GET"))
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture
def hybrid_index(tiny_dataset, tiny_bundle, tmp_path):
    return Index.build(tiny_dataset / "corpus.jsonl", tmp_path / "idx",
                       bundle=Bundle.load(tiny_bundle)).path


def test_served_results_equal_the_local_searcher(hybrid_index):
    local = Searcher(hybrid_index)
    settings = SearchSettings(budget=5, rerank=3, top=4, alpha=0.7)
    expected = local.search(QUERY, settings)
    with running(hybrid_index) as (url, _):
        status, answer = call(url, "/search", {"query": QUERY, "budget": 5, "rerank": 3,
                                               "top": 4, "alpha": 0.7})
        client = ServiceClient(url)
        batch = client.search_many([QUERY, "労働時間の上限"], settings)
        document = client.document("d4")
        info = client.info()
        health = call(url, "/health")
        schema = call(url, "/openapi.json")[1]
    assert status == 200
    assert [h["id"] for h in answer["hits"]] == [h.id for h in expected.hits]
    assert [h["score"] for h in answer["hits"]] == pytest.approx([h.score for h in
                                                                  expected.hits])
    assert answer["settings"] == expected.settings
    assert [h.id for h in batch[0].hits] == [h.id for h in expected.hits]
    assert [h.id for h in batch[1].hits] == [
        h.id for h in local.search("労働時間の上限", settings).hits]
    assert document["title"] == "個人情報の保護に関する法律 第二十七条"
    assert info["documents"] == 6 and info["dense"] and info["reranker"]
    assert health == (200, {"status": "ok", "documents": 6})
    assert {"/search", "/search/batch", "/documents/{doc_id}"} <= set(schema["paths"])


def test_the_cli_searches_a_service_as_it_searches_the_index(hybrid_index, capsys):
    assert main(["search", QUERY, "--index", str(hybrid_index), "--json", "--top", "3"]) == 0
    local = json.loads(capsys.readouterr().out)
    with running(hybrid_index) as (url, _):
        assert main(["search", QUERY, "--server", url, "--json", "--top", "3"]) == 0
        served = json.loads(capsys.readouterr().out)
    assert [h["id"] for h in served["hits"]] == [h["id"] for h in local["hits"]]
    assert served["settings"] == local["settings"]


def test_a_token_once_set_is_required(hybrid_index, tmp_path, capsys):
    with running(hybrid_index, token="s3cret") as (url, _):
        assert call(url, "/search", {"query": QUERY}) == (
            401, {"error": "missing or wrong bearer token"})
        assert call(url, "/search", {"query": QUERY}, token="wrong")[0] == 401
        assert call(url, "/health")[0] == 401
        assert call(url, "/documents/d1", token="wrong")[0] == 401
        assert call(url, "/search", {"query": QUERY}, token="s3cret")[0] == 200
        token_file = tmp_path / "token"
        token_file.write_text("s3cret\n")
        assert main(["search", QUERY, "--server", url, "--token-file", str(token_file)]) == 0
        assert main(["search", QUERY, "--server", url]) == 2
        assert "401 missing or wrong bearer token (give its token" in capsys.readouterr().err


@pytest.mark.parametrize("body, status, message", [
    ({"query": QUERY, "budget": 0}, 422, "budget 0: must be a positive integer"),
    ({"query": QUERY, "top": 101}, 422, "top 101: this service answers at most 100"),
    ({"query": QUERY, "budget": 5000}, 422, "budget 5000: this service answers at most 1000"),
    ({"query": QUERY, "pool": 50}, 422, "pool 50: this service answers at most 10"),
    ({"query": QUERY, "alpha": 2}, 422, "alpha 2: must be within [0, 1]"),
    ({"query": QUERY, "rerank_tokens": 0}, 422, "rerank tokens 0: must be a positive integer"),
    ({"query": QUERY, "rerank_tokens": 3}, 422,
     "rerank tokens 3: this bundle's reranker is a cross-encoder"),
    ({"query": QUERY, "fusion": "max"}, 422, "fusion 'max': must be one of weighted, rrf"),
    ({"query": QUERY, "path": "/etc/passwd"}, 422, "unknown field 'path'"),
    ({"query": 7}, 422, "query: expected a string"),
    ({"query": "x" * 2_001}, 422, "query: 2,001 characters, over the limit"),
    ({"queries": [QUERY] * 33}, 422, "queries: 33 given, this service answers at most 32"),
])
def test_bad_parameters_are_refused_by_name(hybrid_index, body, status, message):
    path = "/search/batch" if "queries" in body else "/search"
    with running(hybrid_index) as (url, _):
        got_status, answer = call(url, path, body)
    assert got_status == status
    assert message in answer["error"]


def test_oversized_and_malformed_requests_are_refused(hybrid_index):
    with running(hybrid_index, limits=Limits(max_body_bytes=1_000)) as (url, _):
        status, answer = call(url, "/search", {"query": "法" * 400})
        assert (status, answer) == (413, {"error": "request body over 1000 bytes"})
        status, answer = call(url, "/search", raw=b"{not json")
        assert status == 400 and answer["error"].startswith("request body: not JSON")
        assert call(url, "/search", raw=b"[1, 2]")[0] == 400
        assert call(url, "/documents/nope") == (404, {"error": "no document with id 'nope'"})
        assert call(url, "/documents/../../etc/passwd")[0] == 404  # an id, never a path
        assert call(url, "/nowhere")[0] == 404
        assert call(url, "/search")[0] == 405


def test_a_host_off_loopback_needs_a_token(hybrid_index, monkeypatch, capsys):
    monkeypatch.delenv("LEXEDGE_TOKEN", raising=False)
    with pytest.raises(LexedgeError, match="--host 0.0.0.0: other machines can reach it, so "
                                           "a token is required"):
        serve(hybrid_index, host="0.0.0.0", port=1)
    assert main(["serve", "--index", str(hybrid_index), "--host", "192.168.1.5"]) == 2
    assert "a token is required" in capsys.readouterr().err


def test_the_index_swaps_under_load_with_no_failed_request(tiny_dataset, tmp_path):
    """BM25-only index: ``lexedge index update`` replaces the folder while 4 clients search;
    every request succeeds, each answered by one whole version, and the new article is
    found once the service has swapped."""
    index = Index.build(tiny_dataset / "corpus.jsonl", tmp_path / "idx")
    new_article = Document("d7", title="民法 第五百四十一条", text=(
                           "当事者の一方がその債務を履行しない場合において、相手方が相当の期間を"
                           "定めてその履行の催告をし、その期間内に履行がないときは、相手方は、"
                           "契約の解除をすることができる。"))
    failures, answers = [], []
    stop = threading.Event()
    with running(index.path) as (url, service):
        def client():
            while not stop.is_set():
                status, answer = call(url, "/search", {"query": "契約の解除 催告", "top": 10})
                if status != 200:
                    failures.append((status, answer))
                else:
                    answers.append([h["id"] for h in answer["hits"]])
        with ThreadPoolExecutor(4) as pool:
            for _ in range(4):
                pool.submit(client)
            time.sleep(0.3)
            index.add([new_article])
            deadline = time.monotonic() + 20
            while service.swaps == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.3)
            stop.set()
        status, after = call(url, "/search", {"query": "契約の解除 催告"})
    assert failures == []
    assert service.swaps >= 1
    assert after["hits"][0]["id"] == "d7"
    assert any("d7" not in ids for ids in answers) and any("d7" in ids for ids in answers)


def test_search_and_tui_modules_never_load_the_network_stack(tiny_dataset, tmp_path):
    """The promise stays: a local search imports neither the service nor its client."""
    code = f"""
import json, sys
from lexedge.cli import main
main(["index", "build", "--docs", {str(tiny_dataset)!r}, "--out", {str(tmp_path / 'i')!r}])
main(["search", "損害賠償", "--index", {str(tmp_path / 'i')!r}])
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("uvicorn", "starlette", "anyio")
                or m in ("lexedge.runtime.serve", "lexedge.runtime.client", "urllib.request"))
print(json.dumps(loaded))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, cwd=tmp_path)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_writes_need_the_admin_token_and_show_at_once(tiny_dataset, tmp_path):
    index = Index.build(tiny_dataset / "corpus.jsonl", tmp_path / "idx", progress=False)
    record = {"id": "d7", "title": "民法 第五百四十一条",
              "text": "相当の期間を定めてその履行の催告をし、その期間内に履行がないときは、契約の解除をすることができる。"}
    with running(index.path) as (url, _):  # no admin token: writes are off
        status, answer = call(url, "/documents", {"documents": [record]})
        assert status == 403 and "writes are off" in answer["error"]
    with running(index.path, token="reader", admin_token="writer") as (url, service):
        assert call(url, "/documents", {"documents": [record]}, token="reader")[0] == 401
        assert call(url, "/documents", {"documents": [{"id": "x"}]}, token="writer") == (
            422, {"error": 'documents[0]: missing "text"'})
        status, answer = call(url, "/documents", {"documents": [record]}, token="writer")
        assert (status, answer) == (200, {"added_or_replaced": 1, "documents": 7})
        hits = call(url, "/search", {"query": "契約の解除 催告"}, token="reader")[1]["hits"]
        assert hits[0]["id"] == "d7"  # searchable at once: the service swapped already
        assert call(url, "/documents/d7", token="writer", method="DELETE") == (
            200, {"removed": 1, "documents": 6})
        assert call(url, "/documents/d7", token="writer", method="DELETE")[0] == 404
        assert call(url, "/documents/d1", token="reader", method="DELETE")[0] == 401
    assert len(Index.load(index.path)) == 6
