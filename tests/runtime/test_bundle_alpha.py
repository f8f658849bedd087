"""Issue 19: a trained bundle carries the fusion weight chosen for its embedder on dev; every
search served by it uses that weight unless the search gives its own."""

from lexedge.runtime.index import Index
from lexedge.runtime.searcher import Searcher
from lexedge.runtime.settings import DEFAULT_ALPHA, SearchSettings
from support.tiny_bundle import build_tiny_bundle


def _index(tmp_path, tiny_dataset, alpha):
    characters = (tiny_dataset / "corpus.jsonl").read_text(encoding="utf-8") + \
        (tiny_dataset / "queries.jsonl").read_text(encoding="utf-8")
    bundle = build_tiny_bundle(tmp_path / f"bundle-{alpha}", characters, reranker=False,
                               alpha=alpha)
    from lexedge.runtime.bundle import Bundle

    return Index.build(tiny_dataset / "corpus.jsonl", tmp_path / f"index-{alpha}",
                       bundle=Bundle.load(bundle), progress=False)


def test_searches_use_the_bundles_alpha_unless_they_give_one(tmp_path, tiny_dataset):
    searcher = Searcher(_index(tmp_path, tiny_dataset, 0.0))
    assert searcher.alpha == 0.0 and SearchSettings().alpha is None
    query = "損害を賠償する責任"
    served = searcher.search(query)
    assert served.settings["alpha"] == 0.0
    bm25_order = [doc for doc, _ in searcher.index.bm25.search(query, 10)]
    assert [hit.id for hit in served.hits] == bm25_order[:len(served.hits)]
    assert all("dense" not in hit.scores for hit in served.hits)
    own = searcher.search(query, alpha=1.0)
    assert own.settings["alpha"] == 1.0 and all("dense" in hit.scores for hit in own.hits)


def test_a_bundle_without_a_weight_fuses_at_the_default(tmp_path, tiny_dataset):
    searcher = Searcher(_index(tmp_path, tiny_dataset, None))
    assert searcher.alpha == DEFAULT_ALPHA
    assert searcher.search("損害賠償").settings["alpha"] == DEFAULT_ALPHA


def test_a_weight_for_the_index_language_comes_first(tmp_path, tiny_dataset):
    """The built-in bundle's weights were chosen per language on each dev set (STARD zh 0.5,
    ja_appi ja 0.7): an index of Japanese articles takes the ja weight."""
    from lexedge.runtime.bundle import Bundle

    characters = (tiny_dataset / "corpus.jsonl").read_text(encoding="utf-8") + \
        (tiny_dataset / "queries.jsonl").read_text(encoding="utf-8")
    bundle = Bundle.load(build_tiny_bundle(tmp_path / "b", characters, reranker=False,
                                           alpha=0.5, alpha_by_analyzer={"ja": 0.7,
                                                                         "zh": 0.2}))
    index = Index.build(tiny_dataset / "corpus.jsonl", tmp_path / "ja", bundle=bundle,
                        progress=False)
    assert index.manifest["analyzer"]["name"] == "ja"
    searcher = Searcher(index)
    assert searcher.alpha == 0.7
    assert searcher.search("損害賠償").settings["alpha"] == 0.7
    english = tmp_path / "en.jsonl"
    english.write_text('{"id": "e1", "text": "The tenant pays the rent monthly."}\n'
                       '{"id": "e2", "text": "The landlord repairs the roof."}\n')
    assert Searcher(Index.build(english, tmp_path / "en", bundle=bundle,
                                progress=False)).alpha == 0.5  # no weight for word: alpha
