"""One tiny curriculum run, launched by the distributed tests under ``torchrun`` (or run as a
plain process): ``python distributed_run.py FAMILY OVERRIDES.json``. Each rank writes the
number of passages every InfoNCE loss compared each query against to
``<output_dir>.candidates-<rank>.json`` and the number of corpus texts it encoded each time
(mining, evaluation) to ``<output_dir>.corpus-<rank>.json``, so a test can see what sharing
the work did."""

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> int:
    family_name, overrides_file = sys.argv[1:3]
    from lexedge.trainer import losses
    from lexedge.trainer.config import TrainEmbedderConfig, TrainRerankerConfig
    from lexedge.trainer.config_loader import load_config
    from lexedge.trainer.curriculum import Curriculum
    from lexedge.trainer.embedder.family import EmbedderFamily
    from lexedge.trainer.reranker.family import RerankerFamily

    seen = []
    original = losses.InfoNCELoss.forward

    def recording(self, queries, passages, *args, **kwargs):
        seen.append([int(queries.shape[0]), int(passages.shape[0])])
        return original(self, queries, passages, *args, **kwargs)

    losses.InfoNCELoss.forward = recording
    from lexedge.trainer.embedder import encodings, retriever

    corpus_rows = []
    for module in (encodings, retriever):
        def counting(*args, _original=module.encode, **kwargs):
            if "corpus" in kwargs.get("description", ""):
                corpus_rows.append(len(args[2]))
            return _original(*args, **kwargs)

        module.encode = counting
    overrides = json.loads(Path(overrides_file).read_text(encoding="utf-8"))
    config_class, family = {"embedder": (TrainEmbedderConfig, EmbedderFamily),
                            "reranker": (TrainRerankerConfig, RerankerFamily)}[family_name]
    config = load_config(config_class, None, overrides)
    Curriculum(config, family, log=lambda line: None).run()
    rank = int(os.environ.get("RANK", "0"))
    Path(f"{config.output_dir}.candidates-{rank}.json").write_text(json.dumps(seen))
    Path(f"{config.output_dir}.corpus-{rank}.json").write_text(json.dumps(corpus_rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
