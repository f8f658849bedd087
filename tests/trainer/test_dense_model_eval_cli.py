"""``lexedge eval --method dense --model STAGE_DIR`` evaluates a trainer stage (and a plain
model folder) through the runtime's evaluation engine."""

import json
import subprocess
import sys
from pathlib import Path

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


def test_eval_methods_are_registered_in_one_place():
    """Only ``lexedge.trainer.eval_methods`` fills the runtime's registry (issue 18)."""
    trainer = Path(__file__).resolve().parents[2] / "trainer"
    callers = sorted(p.relative_to(trainer).as_posix() for p in trainer.rglob("*.py")
                     if "register_method(" in p.read_text(encoding="utf-8"))
    assert callers == ["eval_methods.py"]


def test_training_the_embedder_never_imports_the_reranker(tiny_data, tiny_model, tmp_path):
    """A stage trained and evaluated (through ``lexedge eval``'s registry) loads nothing of
    the reranker's (issue 18: it used to, through the registration)."""
    support = Path(__file__).resolve().parents[1]
    code = (f"import sys; sys.path.insert(0, {str(support)!r}); "
            "from support.tiny_encoder import tiny_config_overrides; "
            "from lexedge.trainer.config import TrainEmbedderConfig; "
            "from lexedge.trainer.config_loader import load_config; "
            "from lexedge.trainer.curriculum import Curriculum; "
            "from lexedge.trainer.embedder.family import EmbedderFamily; "
            "config = load_config(TrainEmbedderConfig, None, tiny_config_overrides("
            f"{str(tiny_data)!r}, {str(tiny_model)!r}, {str(tmp_path / 'run')!r}) "
            "+ ['phases=1']); "
            "metrics = Curriculum(config, EmbedderFamily, log=lambda line: None).run()['metrics']; "
            "assert 'stage1' in metrics, metrics; "
            "loaded = [m for m in sys.modules if m.startswith('lexedge.trainer.reranker')]; "
            "assert not loaded, loaded")
    subprocess.run([sys.executable, "-c", code], check=True)
