import json
import os
import sys
from pathlib import Path


import pytest

from lexedge import disable_telemetry

sys.path.insert(0, str(Path(__file__).parent))  # tests/support helpers

# Nothing may reach a model hub, in tests or anywhere else.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
# Nor onnxruntime's telemetry: before any test module imports it, and for every subprocess a
# test starts (they inherit the variable). Importing lexedge did it; said here so it is seen.
disable_telemetry()

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` beside the checkout; tests that need it skip where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("needs ../shared/data beside the checkout")
    return SHARED_DATA


def write_jsonl(path: Path, records) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


@pytest.fixture
def tiny_bundle(tmp_path, tiny_dataset) -> Path:
    """A real ONNX bundle (embedder + reranker) over the tiny dataset's characters."""
    pytest.importorskip("onnx")
    from support.tiny_bundle import build_tiny_bundle

    characters = (tiny_dataset / "corpus.jsonl").read_text(encoding="utf-8") + \
        (tiny_dataset / "queries.jsonl").read_text(encoding="utf-8")
    return build_tiny_bundle(tmp_path / "bundle", characters)


@pytest.fixture
def tiny_dataset(tmp_path) -> Path:
    """A six-article bilingual BEIR folder with two dev queries."""
    root = tmp_path / "tiny"
    write_jsonl(root / "corpus.jsonl", [
        {"id": "d1", "title": "民法 第九十条", "text": "公の秩序又は善良の風俗に反する法律行為は、無効とする。"},
        {"id": "d2", "title": "民法 第七百九条",
         "text": "故意又は過失によって他人の権利又は法律上保護される利益を侵害した者は、これによって生じた損害を賠償する責任を負う。"},
        {"id": "d3", "title": "刑法 第百九十九条", "text": "人を殺した者は、死刑又は無期若しくは五年以上の懲役に処する。"},
        {"id": "d4", "title": "個人情報の保護に関する法律 第二十七条",
         "text": "個人情報取扱事業者は、あらかじめ本人の同意を得ないで、個人データを第三者に提供してはならない。"},
        {"id": "d5", "title": "労働基準法 第三十二条",
         "text": "使用者は、労働者に、休憩時間を除き一週間について四十時間を超えて、労働させてはならない。"},
        {"id": "d6", "title": "著作権法 第二十一条", "text": "著作者は、その著作物を複製する権利を専有する。"},
    ])
    write_jsonl(root / "queries.jsonl", [
        {"id": "q1", "text": "本人の同意なしに個人データを第三者へ提供できますか"},
        {"id": "q2", "text": "他人の権利を侵害した場合の損害賠償責任"},
        {"id": "q3", "text": "労働時間の上限"},
    ])
    (root / "qrels").mkdir()
    (root / "qrels" / "dev.tsv").write_text(
        "query-id\tcorpus-id\tscore\nq1\td4\t1\nq2\td2\t1\n", encoding="utf-8")
    (root / "qrels" / "train.tsv").write_text("q3\td5\t1\n", encoding="utf-8")
    return root
