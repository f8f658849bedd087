"""``lexedge eval --method dense --model STAGE_DIR`` evaluates a trainer stage (and a plain
model folder) through the runtime's evaluation engine."""

import json
import subprocess
import sys

from lexedge.cli import main


def test_eval_dense_model_on_a_stage_folder(finished_run, tiny_data, tmp_path, capsys):
    output, _ = finished_run
    out = tmp_path / "metrics.json"
    code = main(["eval", str(tiny_data), "--split", "dev", "--method", "dense",
                 "--model", str(output / "stage3"), "--metrics-out", str(out)])
    assert code == 0
    metrics = json.loads(out.read_text())
    assert metrics["method"] == "dense" and metrics["queries"] == 8
    assert metrics["model"].endswith("stage3") and len(metrics["stack"]) == 4
    assert {f"recall@{k}" for k in (1, 3, 5, 10, 20, 50, 100, 200)} <= set(metrics)
    assert "dense on" in capsys.readouterr().out
    # the run's own dev evaluation went through the same engine: same numbers
    recorded = json.loads((output / "stage3" / "metrics.json").read_text())
    assert metrics["recall@10"] == recorded["recall@10"]


def test_eval_dense_model_on_a_plain_model_folder(tiny_model, tiny_data, tmp_path):
    out = tmp_path / "metrics.json"
    assert main(["eval", str(tiny_data), "--method", "dense", "--model", str(tiny_model),
                 "--metrics-out", str(out)]) == 0
    assert json.loads(out.read_text())["corpus_size"] == 48


def test_trainer_cli_imports_no_torch():
    code = ("import sys; from lexedge.cli import build_parser; build_parser(); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
