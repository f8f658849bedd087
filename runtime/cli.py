"""Runtime subcommands: ``eval``, ``index build``, ``search``, ``demo``. Only argparse and the
search settings are imported here; each handler imports what it needs when it runs."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from dataclasses import fields
from pathlib import Path
from typing import Callable

from .settings import CHOICE, FILTERS, FRACTION, NON_NEGATIVE, POSITIVE, SearchSettings

#: Bundles the demo can make by name (``--bundle default``). ``lexedge.export`` registers
#: ``default`` when it is installed; the runtime never imports it.
BUNDLE_BUILDERS: dict[str, Callable[[Path], None]] = {}


def register_bundle_builder(name: str, build: Callable[[Path], None]) -> None:
    """Let ``lexedge demo --bundle NAME`` write a bundle with ``build(folder)``."""
    BUNDLE_BUILDERS[name] = build


#: The search settings ``lexedge eval`` takes: the run's depth replaces ``top``, and a benchmark
#: is not filtered.
EVAL_SETTINGS = ("budget", "pool", "rerank", "rerank_weight", "rerank_tokens", "alpha",
                 "fusion")

JSON_HELP = "print the result as one JSON object (for scripts)"

REPORTED_METRICS = ("recall@1", "recall@3", "recall@5", "recall@10", "recall@20", "recall@50",
                    "recall@100", "recall@200", "mrr@10", "ndcg@10")


# argparse types for the numeric options, shared by every command that takes them (the TUI's
# too), so a bad value is refused by name before anything is loaded: ``argument --budget: -5:
# must be a positive integer`` (issue 20, finding 8). ``SearchSettings`` checks the values
# again for the Python API.
def positive_int(text: str) -> int:
    """An integer >= 1: ``--budget``, ``--top``."""
    return _number(text, int, 1, _INFINITY, "a positive integer")


def non_negative_int(text: str) -> int:
    """An integer >= 0: ``--rerank`` (0 turns it off)."""
    return _number(text, int, 0, _INFINITY, "an integer >= 0")


def fraction(text: str) -> float:
    """A number within [0, 1]: ``--alpha``, ``--rerank-weight``, BM25's ``--b``."""
    return _number(text, float, 0.0, 1.0, "a number within [0, 1]")


def non_negative_float(text: str) -> float:
    """A finite number >= 0: BM25's ``--k1``."""
    return _number(text, float, 0.0, _INFINITY, "a number >= 0")


_INFINITY = float("inf")


def shard_spec(text: str) -> tuple[int, int]:
    """``I/N``: shard I of N, counted from 0 (``index encode --shard``)."""
    try:
        shard, shards = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text}: expected I/N, shard I of N counted from 0 "
                                         "(e.g. 0/4)") from None
    if shards < 1 or not 0 <= shard < shards:
        raise argparse.ArgumentTypeError(f"{text}: expected 0 <= I < N")
    return shard, shards


def add_providers_option(parser) -> None:
    parser.add_argument("--providers", metavar="NAME[,NAME]",
                        type=lambda text: tuple(n.strip() for n in text.split(",") if n.strip()),
                        help="onnxruntime execution providers to embed with, by preference: "
                             "cuda, coreml, directml, openvino, rocm (the CPU is always the "
                             "fallback; default: cpu)")


def _number(text: str, kind, low, high, wanted: str):
    try:
        value = kind(text)
    except ValueError:
        value = None
    # NaN fails every comparison; infinity is no setting
    if value is None or not low <= value <= high or value == _INFINITY:
        raise argparse.ArgumentTypeError(f"{text}: must be {wanted}")
    return value


#: The argparse type of each kind of search setting (see lexedge.runtime.settings).
_SETTING_TYPES = {POSITIVE: positive_int, NON_NEGATIVE: non_negative_int, FRACTION: fraction}


def add_search_settings(parser, defaults: SearchSettings | None = None,
                        names: Iterable[str] | None = None) -> None:
    """Add an option for each :class:`SearchSettings` field in ``names`` (default: every one):
    ``--budget``, ``--rerank``, ``--rerank-weight``, ``--alpha`` | ``--fusion``, ``--top``,
    ``--filter``. Help, choices and checks come from the dataclass, the defaults from
    ``defaults`` (default: ``SearchSettings()``); :func:`search_settings` reads them back."""
    defaults = SearchSettings() if defaults is None else defaults
    wanted = [s for s in fields(SearchSettings) if names is None or s.name in names]
    # alpha weighs the weighted fusion only: one or the other
    fusion = parser.add_mutually_exclusive_group() \
        if {"alpha", "fusion"} <= {s.name for s in wanted} else parser
    for setting in wanted:
        about, default = setting.metadata, getattr(defaults, setting.name)
        group = fusion if setting.name in ("alpha", "fusion") else parser
        if about["kind"] == FILTERS:
            group.add_argument("--filter", dest=setting.name, action="append",
                               default=[f"{k}={v}" for k, v in default.items()],
                               metavar=about["metavar"], help=about["help"])
            continue
        options = {"choices": about["choices"]} if about["kind"] == CHOICE \
            else {"type": _SETTING_TYPES[about["kind"]]}
        group.add_argument("--" + setting.name.replace("_", "-"), default=default,
                           metavar=about.get("metavar"), **options,
                           help=about["help"] + ("" if default is None
                                                 else f" (default {default})"))


def search_settings(args: argparse.Namespace,
                    defaults: SearchSettings | None = None) -> SearchSettings:
    """The settings the options of :func:`add_search_settings` were given; a setting the
    command has no option for keeps ``defaults``' value (default: ``SearchSettings()``'s)."""
    given = {s.name: getattr(args, s.name) for s in fields(SearchSettings)
             if hasattr(args, s.name)}
    if "filters" in given:
        given["filters"] = parse_filters(given["filters"])
    return (SearchSettings() if defaults is None else defaults).replace(**given)


def add_commands(commands) -> None:
    from .residual_codec import BITS, DEFAULT_BITS

    evaluate = commands.add_parser(
        "eval", help="evaluate a retrieval method on a BEIR dataset split",
        description="Evaluate retrieval on DATA_DIR (corpus.jsonl, queries.jsonl, qrels/). "
                    "The search settings apply to the served methods (dense, hybrid, "
                    "pipeline); --rerank also to --method rerank.")
    evaluate.add_argument("data_dir", metavar="DATA_DIR")
    evaluate.add_argument("--split", default="dev", help="qrels split (default: dev)")
    evaluate.add_argument("--method", default="bm25",
                          choices=("bm25", "dense", "hybrid", "pipeline", "rerank"),
                          help="bm25 (default); dense / hybrid / pipeline run the served "
                               "path of --index or --bundle; dense --model DIR a trainer "
                               "stage; rerank --model DIR a trainer reranker stage over "
                               "--first-stage's top --rerank candidates")
    evaluate.add_argument("--analyzer", default="auto", choices=("auto", "ja", "zh", "word"),
                          help="lexical analyzer; auto detects it from the corpus")
    evaluate.add_argument("--k1", type=non_negative_float, default=1.2,
                          help="BM25 k1 (default 1.2)")
    evaluate.add_argument("--b", type=fraction, default=0.75, help="BM25 b (default 0.75)")
    evaluate.add_argument("--index", help="evaluate a saved index instead of building one")
    evaluate.add_argument("--bundle", metavar="builtin|DIR",
                          help="bundle whose models serve dense/hybrid/pipeline: 'builtin' "
                               "(shipped with lexedge) or a folder")
    evaluate.add_argument("--model", help="a trainer model or stage folder (--method dense)")
    add_search_settings(evaluate, names=EVAL_SETTINGS)
    evaluate.add_argument("--first-stage", default="bm25", metavar="bm25|EMBEDDER_DIR",
                          help="candidates for --method rerank: bm25 (default) or an embedder "
                               "stage folder")
    evaluate.add_argument("--metrics-out", type=Path, help="write the metrics as JSON here")
    evaluate.add_argument("--run-out", type=Path, help="write the ranking as a TREC run here")
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON")
    evaluate.set_defaults(handler=run_eval)

    index = commands.add_parser("index", help="build or change a search index")
    index_commands = index.add_subparsers(dest="index_command", required=True, metavar="ACTION")
    build = index_commands.add_parser(
        "build", help="index a corpus.jsonl or a folder of .txt/.md/.html (.pdf/.docx) files")
    build.add_argument("--docs", required=True, type=Path,
                       help="corpus.jsonl, a BEIR dataset folder, or a folder of documents")
    build.add_argument("--out", required=True, type=Path, help="index folder to write")
    build.add_argument("--bundle", metavar="builtin|DIR",
                       help="bundle whose embedder adds dense vectors: 'builtin' (shipped with"
                            " lexedge) or a folder; without it the index is BM25 only")
    build.add_argument("--analyzer", default="auto", choices=("auto", "ja", "zh", "word"))
    build.add_argument("--k1", type=non_negative_float, default=1.2)
    build.add_argument("--b", type=fraction, default=0.75)
    build.add_argument("--vectors", nargs="+", type=Path, metavar="SHARD_DIR",
                       help="vectors encoded apart by `lexedge index encode`: documents found "
                            "there with the same text are not embedded again")
    build.add_argument("--passage-states", nargs="?", const=DEFAULT_BITS, type=int,
                       choices=BITS, metavar="BITS",
                       help="also store each passage's re-ranking states (ColBERTv2 residuals, "
                            f"BITS a dimension: {', '.join(map(str, BITS))}; default "
                            f"{DEFAULT_BITS}, about 200 bytes a token with builtin; 2 halves "
                            "that at some quality), so that re-ranking encodes only the "
                            "query; needs a bundle with a late-interaction reranker, such as "
                            "builtin. A rebuild keeps them only when given this again")
    add_providers_option(build)
    build.add_argument("--json", action="store_true", help=JSON_HELP)
    build.set_defaults(handler=run_index_build)
    encode = index_commands.add_parser(
        "encode", help="embed one shard of a corpus (on this process or machine) for a later "
                       "`index build --vectors`",
        description="Embed shard I of N of the documents `index build` reads (its chunks "
                    "of 1,024 documents c with c % N == I, batched as the build batches them) "
                    "into a vector shard folder. Run the N shards on several processes or "
                    "machines, then `lexedge index build --vectors SHARD_DIR...` gives the "
                    "index one build gives.")
    encode.add_argument("--docs", required=True, type=Path,
                        help="corpus.jsonl, a BEIR dataset folder, or a folder of documents")
    encode.add_argument("--bundle", required=True, metavar="builtin|DIR")
    encode.add_argument("--shard", required=True, type=shard_spec, metavar="I/N",
                        help="shard I of N, counted from 0 (e.g. 0/4)")
    encode.add_argument("--out", required=True, type=Path, help="shard folder to write")
    add_providers_option(encode)
    encode.add_argument("--json", action="store_true", help=JSON_HELP)
    encode.set_defaults(handler=run_index_encode)
    for action, text in (("add", "add documents (an existing id is replaced)"),
                         ("update", "re-read documents: changed ones replaced, new ones added, "
                                    "vanished parts of the same source files removed")):
        change = index_commands.add_parser(action, help=text)
        change.add_argument("--index", required=True, type=Path)
        change.add_argument("--docs", required=True, type=Path)
        change.add_argument("--json", action="store_true", help=JSON_HELP)
        change.set_defaults(handler=run_index_change)
    remove = index_commands.add_parser("remove", help="remove documents by id or source file")
    remove.add_argument("--index", required=True, type=Path)
    remove.add_argument("--ids", nargs="*", default=[], help="document ids")
    remove.add_argument("--source", nargs="*", default=[],
                        help="remove every document from these source files")
    remove.add_argument("--json", action="store_true", help=JSON_HELP)
    remove.set_defaults(handler=run_index_remove)

    search = commands.add_parser(
        "search", help="search an index, or a lexedge serve service",
        description="Answer QUERY from an index (or a running service). Exit status 0 when "
                    "something was found, 1 when nothing was, 2 on an error, as grep.")
    search.add_argument("query")
    add_index_or_server(search)
    add_search_options(search)
    search.set_defaults(handler=run_search)

    serve = commands.add_parser(
        "serve", help="serve one index to several users and applications over HTTP",
        description="Load the index and its bundle once and answer JSON searches "
                    "(POST /search, /search/batch; GET /documents/ID, /info, /health, "
                    "/openapi.json). The only lexedge command that opens a socket. Loopback "
                    "only unless --host says otherwise, and then a token is required. "
                    "Needs the [serve] extra.")
    serve.add_argument("--index", required=True, type=Path)
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=positive_int, default=8765, help="(default 8765)")
    serve.add_argument("--token-file", type=Path,
                       help="file holding the bearer token every request must carry "
                            "(else LEXEDGE_TOKEN; required off loopback)")
    serve.add_argument("--admin-token-file", type=Path,
                       help="file holding the token of the write endpoints (POST /documents, "
                            "DELETE /documents/ID; else LEXEDGE_ADMIN_TOKEN; without it "
                            "writes are off)")
    serve.add_argument("--bundle", metavar="builtin|DIR",
                       help="bundle (default: the one the index was built with)")
    serve.set_defaults(handler=run_serve)

    bundle = commands.add_parser("bundle", help="describe a bundle")
    bundle_commands = bundle.add_subparsers(dest="bundle_command", required=True,
                                            metavar="ACTION")
    info = bundle_commands.add_parser(
        "info", help="what a bundle holds: models, size, languages, training data, quality, "
                     "licences")
    info.add_argument("bundle", metavar="builtin|DIR")
    info.add_argument("--json", action="store_true", help="print it as JSON")
    info.set_defaults(handler=run_bundle_info)

    add_demo_command(commands)


def run_bundle_info(args: argparse.Namespace) -> int:
    from .builtin import describe, format_info
    from .bundle import Bundle
    from .snippets import displayable

    info = describe(Bundle.load(args.bundle))
    print(json.dumps(info, ensure_ascii=False, indent=2) if args.json
          else displayable(format_info(info)))
    return 0


def add_demo_command(commands) -> None:
    demo = commands.add_parser(
        "demo", help="search the sample of Japanese statutes shipped with lexedge",
        description="Index the bundled sample (3,610 articles of 12 Japanese laws) into "
                    "OUT/index once, then answer QUERY with hybrid BM25 + dense search and "
                    "the models shipped with lexedge (--bundle builtin, the default). "
                    "--bundle none searches with BM25 only; --bundle default (needs the "
                    "[export] extra) first exports the zero-shot multilingual-e5-small as an "
                    "INT8 bundle into OUT/bundle.")
    demo.add_argument("query", nargs="?", default=DEMO_QUERY)
    demo.add_argument("--out", required=True, type=Path,
                      help="working folder: OUT/index (and OUT/bundle), created once")
    demo.add_argument("--bundle", metavar="builtin|none|default|DIR",
                      help="serve with this bundle: builtin (the default when installed), "
                           "none (BM25 only), a folder, or 'default' to export one")
    add_search_settings(demo, defaults=SearchSettings(top=DEMO_TOP))
    demo.set_defaults(handler=run_demo)


DEMO_QUERY = "本人の同意を得ないで個人データを第三者に提供してよいか"
DEMO_TOP = 5  # the demo shows the answer, not a result list: fewer hits than a search


# the next question the demo suggests: one the sample answers (its top hit is APPI art. 17,
# changing the purpose of use), so the printed command runs as it stands
DEMO_NEXT_QUESTION = "個人情報の利用目的を変更するとき"


def run_demo(args: argparse.Namespace) -> int:
    from importlib.resources import files

    from .builtin import BUILTIN, has_builtin
    from .bundle import Bundle
    from .errors import LexedgeError
    from .index import MANIFEST_FILE, Index
    from .searcher import check_query
    from .snippets import displayable

    sample = Path(str(files("lexedge.runtime") / "samples" / "ja_statutes_sample.jsonl.gz"))
    bundle = None
    if args.bundle is None:
        args.bundle = BUILTIN if has_builtin() else "none"
    if args.bundle == BUILTIN:
        bundle = Bundle.load(BUILTIN)
    elif args.bundle == "none":
        bundle = None
    elif args.bundle in BUNDLE_BUILDERS:
        bundle_path = args.out / "bundle"
        if not (bundle_path / MANIFEST_FILE).is_file():
            print(f"exporting the {args.bundle} bundle into {bundle_path} …", flush=True)
            BUNDLE_BUILDERS[args.bundle](bundle_path)
        bundle = Bundle.load(bundle_path)
    elif args.bundle is not None:
        if not Path(args.bundle).is_dir():
            known = ", ".join(sorted(BUNDLE_BUILDERS)) or "none: install lexedge[export]"
            raise LexedgeError(f"--bundle {args.bundle}: not a bundle folder nor a known name "
                               f"({known})")
        bundle = Bundle.load(args.bundle)
    index_path = args.out / "index"
    if not _demo_index_serves(index_path, bundle):
        print(f"indexing the bundled sample into {index_path} …", flush=True)
        Index.build(sample, index_path, bundle=bundle)
    args.index, args.json = index_path, False
    args.bundle = None if bundle is None else bundle.reference
    check_query(args.query)  # before it is printed
    print(f"query: {displayable(args.query)}")
    code = run_search(args)
    # where the index went and what to run next (issue 23)
    with_bundle = f" --bundle {args.bundle}" if args.bundle else ""
    steps = [(f'lexedge search "{DEMO_NEXT_QUESTION}" --index {index_path}',
              "another question"),
             (f"lexedge tui --index {index_path}", "search as you type"),
             (f"lexedge index build --docs YOUR_FOLDER{with_bundle} --out my-index",
              "your own documents")]
    width = max(len(command) for command, _ in steps) + 3
    print(f"\nThe sample's index is {index_path}. Next:")
    for command, purpose in steps:
        print(f"  {command.ljust(width)}{purpose}")
    return code


def _demo_index_serves(index_path: Path, bundle) -> bool:
    """Whether the demo's index exists and was built for ``bundle`` (``None``: BM25 only)."""
    from .errors import LexedgeError
    from .index import MANIFEST_FILE, Index

    if not (index_path / MANIFEST_FILE).is_file():
        return False
    try:
        index = Index.load(index_path, bundle=bundle)
    except LexedgeError:
        return False  # built for another bundle
    return (index.dense is None) == (bundle is None)


def add_index_or_server(parser) -> None:
    """``--index IDX`` or ``--server URL`` (with ``--token-file``): what ``search`` and
    ``tui`` search."""
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--index", type=Path, help="the index folder")
    where.add_argument("--server", metavar="URL",
                       help="a running `lexedge serve` (e.g. http://127.0.0.1:8765) instead; "
                            "its token from --token-file or LEXEDGE_TOKEN")
    parser.add_argument("--token-file", type=Path, help="the service's token (with --server)")


def add_search_options(parser) -> None:
    parser.add_argument("--bundle", metavar="builtin|DIR",
                        help="bundle: 'builtin' or a folder (default: the one the index was "
                             "built with)")
    add_search_settings(parser)
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true",
                        help="print the result as one JSON object (query, settings, timings, "
                             "hits)")
    output.add_argument("--jsonl", action="store_true",
                        help="print each hit as a JSON line (for jq, grep and streams)")


def parse_filters(pairs: list[str]) -> dict:
    from .errors import LexedgeError

    filters = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise LexedgeError(f"--filter {pair!r}: expected KEY=VALUE")
        filters[key] = value
    return filters


def run_eval(args: argparse.Namespace) -> int:
    from .evaluation import EvalConfig, run_evaluation
    from .metrics import write_trec_run
    from .storage import write_json_atomic

    settings = search_settings(args)
    config = EvalConfig(data_dir=args.data_dir, split=args.split, method=args.method,
                        analyzer=args.analyzer, k1=args.k1, b=args.b, index=args.index,
                        bundle=args.bundle, model=args.model,
                        **{name: getattr(settings, name) for name in EVAL_SETTINGS},
                        extra={"first_stage": args.first_stage}
                        if args.method == "rerank" else {})
    metrics, run = run_evaluation(config)
    print(json.dumps(metrics, ensure_ascii=False, indent=2) if args.json
          else format_metrics_table(metrics))
    if args.metrics_out:
        write_json_atomic(args.metrics_out, metrics)
    if args.run_out:
        write_trec_run(args.run_out, run, tag=f"lexedge-{args.method}")
    return 0


def format_metrics_table(metrics: dict) -> str:
    header = f"{metrics['method']} on {metrics['dataset']} [{metrics['split']}], " \
             f"{metrics['queries']} queries, {metrics['queries_per_second']} queries/s"
    names = [m for m in REPORTED_METRICS if m in metrics]
    widths = [max(len(n), 6) for n in names]
    top = "  ".join(n.rjust(w) for n, w in zip(names, widths))
    values = "  ".join(f"{metrics[n]:.4f}".rjust(w) for n, w in zip(names, widths))
    return f"{header}\n{top}\n{values}"


def run_index_build(args: argparse.Namespace) -> int:
    from .bundle import Bundle
    from .errors import LexedgeError
    from .index import Index, had_passage_states

    bundle = Bundle.load(args.bundle) if args.bundle else None
    imported = None
    if args.vectors:
        from .vector_shards import ImportedVectors

        if bundle is None:
            raise LexedgeError("--vectors needs the --bundle they were encoded with")
        imported = ImportedVectors(args.vectors, bundle)
    dropping = args.passage_states is None and had_passage_states(args.out)
    index = Index.build(args.docs, args.out, analyzer=args.analyzer, k1=args.k1, b=args.b,
                        bundle=bundle, vectors=imported, providers=args.providers,
                        passage_states=args.passage_states)
    if dropping:
        print(f"lexedge: note: {args.out} held stored passage states; this build stores none "
              "(give --passage-states to keep them)", file=sys.stderr)
    manifest = index.manifest
    vectors, states = manifest.get("vectors"), manifest.get("passage_states")
    if args.json:
        return emit_json({"index": str(args.out), "documents": manifest["documents"],
                          "analyzer": manifest["analyzer"]["name"], "vectors": vectors,
                          "bundle": manifest.get("bundle"), "passage_states": states,
                          "build_seconds": manifest["build_seconds"]})
    dense = f", {vectors['embedded']} embedded, {vectors['reused']} reused" + (
        f", {vectors['imported']} imported" if "imported" in vectors else "") if vectors \
        else ", BM25 only"
    if states:
        dense += f", passage states {states['bytes'] / 1e6:,.1f} MB"
    print(f"indexed {manifest['documents']} documents into {args.out} "
          f"(analyzer {manifest['analyzer']['name']}{dense}, {manifest['build_seconds']} s)")
    return 0


def run_index_encode(args: argparse.Namespace) -> int:
    from .bundle import Bundle
    from .vector_shards import encode_shard

    shard, shards = args.shard
    manifest = encode_shard(args.docs, Bundle.load(args.bundle), args.out, shard, shards,
                            providers=args.providers)
    if args.json:
        return emit_json({"out": str(args.out), **{k: manifest[k] for k in (
            "shard", "shards", "chunk", "documents", "dimension", "providers", "seconds")}})
    print(f"encoded shard {shard}/{shards}: {manifest['documents']} documents into {args.out} "
          f"({', '.join(manifest['providers'])}, {manifest['seconds']} s)")
    return 0


def emit_json(result: dict) -> int:
    print(json.dumps(result, ensure_ascii=False, indent=2))
    return 0


def run_index_change(args: argparse.Namespace) -> int:
    from .index import Index
    from .ingest import iter_documents

    documents = list(iter_documents(args.docs))
    index = Index.load(args.index)
    # The decision (what changed, what vanished) and the changes are made under the index's
    # writer lock, on the index as it is then: a concurrent writer's change is never lost.
    with index.writing():
        index = index.current()
        stale = []
        if args.index_command == "update":
            sources = {d.metadata.get("source") for d in documents} - {None}
            fresh_ids = {d.id for d in documents}
            stale = [index.docs.id_of(row) for row in range(len(index.docs))
                     if row not in index.deleted and index.docs.id_of(row) not in fresh_ids
                     and index.docs.get(row).metadata.get("source") in sources]
        changed = [d for d in documents if index.unchanged_row(d) is None]
        if stale:
            index = index.remove(stale)
        if changed:
            index = index.add(changed, progress=True)
    if args.json:
        return emit_json({"index": str(args.index), "added_or_replaced": len(changed),
                          "removed": len(stale), "unchanged": len(documents) - len(changed),
                          "documents": len(index)})
    print(f"{args.index}: {len(changed)} added or replaced, {len(stale)} removed, "
          f"{len(documents) - len(changed)} unchanged; {len(index)} documents")
    return 0


def run_index_remove(args: argparse.Namespace) -> int:
    from .errors import LexedgeError
    from .index import Index

    index = Index.load(args.index)
    with index.writing():
        index = index.current()
        ids = list(args.ids)
        indexed_from = (index.manifest.get("source") or {}).get("path")
        if args.source:
            wanted = {source_name(given, Path(indexed_from or ".")) for given in args.source}
            ids += [index.docs.id_of(row) for row in range(len(index.docs))
                    if row not in index.deleted
                    and index.docs.get(row).metadata.get("source") in wanted]
        if not ids:
            raise LexedgeError(
                "nothing to remove: give --ids, or --source naming an indexed file by its path "
                f"or by its path inside {indexed_from} "
                "(e.g. contracts/nda.txt)")
        index = index.remove(ids)
    if args.json:
        return emit_json({"index": str(args.index), "removed": len(ids),
                          "documents": len(index)})
    print(f"{args.index}: removed {len(ids)}; {len(index)} documents")
    return 0


def source_name(given: str, folder: Path) -> str:
    """How documents record the file ``given`` names: its path inside the indexed folder, for
    a path given whole (``/home/me/office/a.txt``) or from here as well as one given that
    way (issue 23)."""
    candidate = Path(given).expanduser()
    for whole in (candidate, Path.cwd() / candidate):
        try:
            return whole.resolve().relative_to(folder.resolve()).as_posix()
        except ValueError:
            continue
    return given


def run_serve(args: argparse.Namespace) -> int:
    from .serve import serve  # without the [serve] extra, lexedge.cli names it

    serve(args.index, host=args.host, port=args.port, token_file=args.token_file,
          bundle=args.bundle, admin_token_file=args.admin_token_file)
    return 0


def run_search(args: argparse.Namespace) -> int:
    from .searcher import Searcher
    from .snippets import displayable, json_safe

    settings = search_settings(args)
    if getattr(args, "server", None):
        from .client import ServiceClient  # only a --server search touches the network

        if args.bundle:
            from .errors import LexedgeError
            raise LexedgeError("--bundle: the service searches with its own bundle; "
                               "drop --bundle with --server")
        result = ServiceClient(args.server, token_file=args.token_file).search(
            args.query, settings)
    else:
        result = Searcher(args.index, bundle=args.bundle).search(args.query, settings)
    if getattr(args, "jsonl", False):
        for hit in result.hits:
            print(json_safe(json.dumps(hit.to_dict(), ensure_ascii=False)))
        return found(result)
    if args.json:
        # The exact texts: JSON escapes the C0 controls itself, json_safe the rest a terminal
        # would act on (issue 20, finding 10).
        print(json_safe(json.dumps({"query": result.query, "settings": result.settings,
                                    "timings_ms": result.timings_ms,
                                    "hits": [hit.to_dict() for hit in result.hits]},
                                   ensure_ascii=False, indent=2)))
        return found(result)
    if not result.hits:
        print("no results")
    for hit in result.hits:
        # Titles, ids and texts come from the documents: a terminal must show them, never act
        # on them (an ESC ] 0 ; … in a title retitled the terminal: issue 20, finding 10).
        title, doc_id = (displayable(" ".join(text.split())) for text in (hit.title or hit.id,
                                                                           hit.id))
        stages = " ".join(f"{k} {v:.3f}" for k, v in hit.scores.items())
        print(f"{hit.rank:>3}. {title}  [{doc_id}]  {stages}")
        print(f"     {displayable(hit.snippet)}")
    weight, tokens = result.settings["rerank_weight"], result.settings.get("rerank_tokens")
    mixed = f" at weight {weight:g}" if weight is not None and weight != 1.0 else ""
    mixed += f", {tokens} tokens each" if tokens is not None else ""
    mixed += ", from the stored passage states" \
        if result.settings.get("rerank_states") == "stored" else ""
    print(f"({result.timings_ms['total']:.0f} ms, budget {result.settings['budget']}, "
          f"reranked {result.settings['rerank']}{mixed})")
    return found(result)


def found(result) -> int:
    """The exit status of a search, as grep's and ripgrep's: 0 when it found something, 1
    when it found nothing (2 is an error)."""
    return 0 if result.hits else 1
