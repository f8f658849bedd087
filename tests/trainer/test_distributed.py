"""Several processes (issue 21): ``torchrun`` with two CPU processes (gloo) trains the same
model as one process at the same global batch, an epoch sees each example once across the
ranks, and the embedder's loss sees the passages of every rank."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from support.tiny_encoder import tiny_config_overrides

SUPPORT = Path(__file__).resolve().parents[1] / "support"
TOLERANCE = 2e-4  # float32 sums in another order (shares, padding), over 4 steps a stage


# what a rendezvous says when its port was taken meanwhile
PORT_TAKEN = ("EADDRINUSE", "Address already in use", "failed to listen")


def _free_port() -> int:
    with socket.socket() as sock:  # loopback only: the rendezvous of the two processes
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _launch(family: str, overrides: list[str], output: Path, processes: int) -> Path:
    spec = output.parent / f"{output.name}.overrides.json"
    spec.write_text(json.dumps(overrides + [f'output_dir="{output}"']))
    run = [str(SUPPORT / "distributed_run.py"), family, str(spec)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(SUPPORT.parent), os.environ.get("PYTHONPATH", "")])}
    for _ in range(3):
        command = run if processes == 1 else [
            "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(processes),
            "--master_addr", "127.0.0.1", "--master_port", str(_free_port())] + run
        result = subprocess.run([sys.executable] + command, capture_output=True, text=True,
                                env=env, timeout=600)
        # the free port can be taken between _free_port closing it and the rendezvous binding
        # it: then a fresh port, again
        if result.returncode == 0 or not any(sign in result.stderr for sign in PORT_TAKEN):
            break
    errors = [line for line in result.stderr.splitlines()
              if "Error" in line and "[W" not in line]
    assert result.returncode == 0, "\n".join(errors[:5]) or result.stderr[-3000:]
    return output


@pytest.fixture(scope="module")
def no_dropout_model(tmp_path_factory, tiny_data):
    """The tiny encoder without dropout, so two runs may take the same steps."""
    from support.tiny_encoder import build_tiny_encoder

    folder = build_tiny_encoder(tmp_path_factory.mktemp("nodrop"), tiny_data)
    config = json.loads((folder / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def _embedder_overrides(tiny_data, model):
    return [o for o in tiny_config_overrides(tiny_data, model, Path("unused"))
            if not o.startswith(("output_dir", "mlm."))] + [
        "phases=1,2,3", "lora.dropout=0.0",
        "stage1.steps=0", "stage1.epochs=1", "stage2.steps=0", "stage2.epochs=1"]


@pytest.fixture(scope="module")
def embedder_runs(tmp_path_factory, tiny_data, no_dropout_model):
    root = tmp_path_factory.mktemp("distributed")
    """One process; two processes with the cached loss (GradCache, a text at a time), whose
    gradient is the uncached one: both must train the same model."""
    overrides = _embedder_overrides(tiny_data, no_dropout_model)
    return (_launch("embedder", overrides, root / "one", 1),
            _launch("embedder", overrides + ["runtime.gradient_cache_chunk=1"], root / "two",
                    2))


def _manifest(stage_dir: Path) -> dict:
    return json.loads((stage_dir / "lexedge_stage.json").read_text())


def _weights_close(first: Path, second: Path) -> float:
    """The largest difference between two stages' adapter weights. A listwise softmax is blind
    to a logit's constant shift, so the classifier's bias gets only rounding noise for a
    gradient, which Adam scales up to full steps either way: it is left out."""
    from safetensors.torch import load_file

    a, b = load_file(str(first / "adapter_model.safetensors")), \
        load_file(str(second / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a if not k.endswith("classifier.bias"))


@pytest.mark.parametrize("stage", ["stage1", "stage2", "stage3"])
def test_two_embedder_processes_train_what_one_does(embedder_runs, stage):
    one, two = embedder_runs
    single, double = _manifest(one / stage)["training"], _manifest(two / stage)["training"]
    assert double["processes"] == 2 and single["processes"] == 1
    assert single["steps"] == double["steps"]
    for a, b in zip(single["loss_curve"], double["loss_curve"], strict=True):
        assert abs(a - b) < TOLERANCE
    assert _weights_close(one / stage, two / stage) < TOLERANCE
    # stage 3 re-mined its negatives with the model: the same ones on both runs
    assert (one / stage / "hard_negatives.jsonl").read_text() == \
        (two / stage / "hard_negatives.jsonl").read_text()


def test_every_rank_evaluates_and_the_metrics_match(embedder_runs):
    """The corpus is encoded a share per rank and gathered, for mining and evaluation."""
    one, two = embedder_runs
    for stage in ("base", "stage1", "stage2", "stage3"):
        single = json.loads((one / "metrics" / f"{stage}.json").read_text())
        double = json.loads((two / "metrics" / f"{stage}.json").read_text())
        for name in ("recall@10", "recall@100", "mrr@10", "ndcg@10"):
            assert abs(single[name] - double[name]) < 1e-6, (stage, name)
    whole = json.loads(Path(f"{one}.corpus-0.json").read_text())
    halves = [json.loads(Path(f"{two}.corpus-{r}.json").read_text()) for r in (0, 1)]
    assert whole and len(halves[0]) == len(halves[1]) == len(whole)
    assert [a + b for a, b in zip(*halves)] == whole  # each rank encoded its share only


def test_an_epoch_sees_each_example_once_across_the_ranks(embedder_runs, tiny_data):
    one, two = embedder_runs
    for run in (one, two):
        manifest = _manifest(run / "stage1")
        examples = manifest["data"]["examples"]
        batch = manifest["stage_settings"]["batch_size"]
        assert manifest["training"]["steps_per_epoch"] == examples // batch
        assert manifest["training"]["examples_first_epoch"] == examples // batch * batch


def test_gathered_negatives_make_the_loss_see_every_ranks_passages(embedder_runs):
    one, two = embedder_runs
    single = json.loads(Path(f"{one}.candidates-0.json").read_text())
    ranks = [json.loads(Path(f"{two}.candidates-{r}.json").read_text()) for r in (0, 1)]
    assert len(single) == len(ranks[0]) == len(ranks[1])
    for whole, left, right in zip(single, *ranks):
        # each rank scores half the queries, against the passages of the whole batch
        assert left[0] == right[0] == whole[0] // 2
        assert left[1] == right[1] == whole[1]


@pytest.mark.parametrize("variant", ["pooler", "mean", "split-attention"])
def test_two_reranker_processes_train_what_one_does(embedder_runs, tiny_data, no_dropout_model,
                                                    tmp_path, variant):
    embedder = embedder_runs[0] / "stage2"
    overrides = [o for o in tiny_config_overrides(tiny_data, no_dropout_model, Path("unused"))
                 if not o.startswith(("output_dir", "mlm.", "stage3."))] + [
        "phases=1,2,3", "lora.dropout=0.0", "evaluation.enabled=false",
        f'embedder="{embedder}"', "stage1.hard_negatives=2", "stage1.random_negatives=1",
        "stage2.hard_negatives=2", "stage3.epochs=1", "stage3.examples_per_epoch=8",
        "stage3.batch_size=4", "stage3.candidates=8", "stage3.rank_window=[0, 4]",
        "stage3.hard_negatives=2", "stage3.max_query_length=16",
        "stage3.max_passage_length=32"]
    if variant == "mean":
        overrides += ['head="mean"']
    if variant == "split-attention":
        overrides += [f'base_model="{embedder}"', 'head="segments"', "head_temperature=0.1",
                      "separate_layers=1", "cross_attention_bias=-3.0"]
    one = _launch("reranker", overrides, tmp_path / "one", 1)
    two = _launch("reranker", overrides, tmp_path / "two", 2)
    for stage in ("stage1", "stage2", "stage3"):
        single, double = _manifest(one / stage)["training"], _manifest(two / stage)["training"]
        assert double["processes"] == 2
        for a, b in zip(single["loss_curve"], double["loss_curve"], strict=True):
            assert abs(a - b) < TOLERANCE, (stage, single["loss_curve"], double["loss_curve"])
        assert _weights_close(one / stage, two / stage) < TOLERANCE


def test_a_batch_that_does_not_divide_among_the_processes_is_refused_first(tiny_data,
                                                                         no_dropout_model):
    from lexedge.runtime.errors import LexedgeError
    from lexedge.trainer.config import TrainEmbedderConfig
    from lexedge.trainer.config_loader import load_config
    from lexedge.trainer.curriculum import _check_shares

    config = load_config(TrainEmbedderConfig, None, _embedder_overrides(
        tiny_data, no_dropout_model) + ['output_dir="unused"', "stage2.batch_size=3"])
    _check_shares(config, 1)
    with pytest.raises(LexedgeError, match=r"stage2.batch_size = 3 does not divide among 2 "
                                           r"processes; use a multiple of 2"):
        _check_shares(config, 2)
