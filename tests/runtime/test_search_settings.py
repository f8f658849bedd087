"""Each search setting is declared once, with its default, in ``SearchSettings`` (issue 18,
item 3): ``lexedge search``, ``eval``, ``demo`` and ``tui``, eval's config, the TUI's controls
and ``Searcher.search`` all show its defaults, and changing one there changes every one of
them. Its checks are the only ones, each a single line naming the setting."""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import io
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lexedge.runtime.errors import LexedgeError
from lexedge.runtime.settings import SearchSettings

#: Settings each command line shows a default for (rerank_weight's and alpha's are "the
#: bundle's").
SHOWN = {"search": ("budget", "rerank", "fusion", "top"),
         "eval": ("budget", "rerank", "fusion"),
         "demo": ("budget", "rerank", "fusion"),  # the demo lists DEMO_TOP hits
         "tui": ("budget", "rerank", "fusion")}  # the TUI lists LISTED hits
#: Other defaults than SearchSettings' own, all different from them and valid together.
CHANGED = {"budget": 123, "rerank": 7, "alpha": 0.25, "fusion": "rrf", "top": 3,
           "rerank_tokens": 48}


@pytest.fixture
def tiny_index(tiny_dataset, tmp_path) -> Path:
    from lexedge.runtime.index import Index

    Index.build(tiny_dataset / "corpus.jsonl", tmp_path / "idx", progress=False)
    return tmp_path / "idx"


def help_defaults(command: list[str]) -> dict[str, str]:
    """``(default X)`` of each option, as ``lexedge COMMAND --help`` prints it."""
    from lexedge.cli import build_parser

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), pytest.raises(SystemExit):
        build_parser().parse_args([*command, "--help"])
    options = printed.getvalue().split("\noptions:\n", 1)[1]
    shown = {}
    for entry in re.split(r"\n  (?=-)", options):  # one option, its metavar and help
        text = " ".join(entry.split())
        default = re.search(r"\(default ([^)]+)\)$", text)
        if text.startswith("--") and default:
            shown[text[2:].split()[0].replace("-", "_")] = default[1]
    return shown


def surfaces(index: Path) -> dict[str, object]:
    """``{"SURFACE|SETTING": default}``: each setting's default as every surface shows or
    uses it. The surfaces are imported here, after a test may have changed the dataclass's
    defaults."""
    from lexedge.cli import build_parser
    from lexedge.runtime.cli import search_settings
    from lexedge.runtime.evaluation import EvalConfig
    from lexedge.runtime.searcher import Searcher
    from lexedge.tui.settings import SearchControls

    commands = {"search": ["search", "q", "--index", str(index)], "eval": ["eval", "DATA"],
                "demo": ["demo", "--out", "OUT"], "tui": ["tui", "--index", str(index)]}
    seen = {}
    for name, argv in commands.items():
        shown = help_defaults(argv[:1])
        settings = search_settings(build_parser().parse_args(argv))
        for setting in SHOWN[name]:
            seen[f"lexedge {name} --help|{setting}"] = shown[setting]
            seen[f"lexedge {name}|{setting}"] = getattr(settings, setting)
    config = EvalConfig(data_dir="DATA")
    for setting in ("budget", "rerank", "rerank_weight", "rerank_tokens", "alpha", "fusion"):
        seen[f"EvalConfig|{setting}"] = getattr(config, setting)
    tui = SearchControls().settings
    for setting in ("budget", "rerank", "rerank_weight", "rerank_tokens", "alpha", "fusion"):
        seen[f"tui SearchControls|{setting}"] = getattr(tui, setting)

    asked = []

    class RecordingSearcher(Searcher):
        def first_stage(self, query, settings, *args):
            asked.append(settings)
            return super().first_stage(query, settings, *args)

    RecordingSearcher(index).search("労働時間")
    for setting in ("budget", "rerank", "rerank_weight", "rerank_tokens", "alpha", "fusion",
                    "top", "filters"):
        seen[f"Searcher.search|{setting}"] = getattr(asked[0], setting)
    return seen


def expected(seen: dict, defaults: dict) -> dict:
    """What ``seen`` should hold when ``defaults`` are the dataclass's (help shows text)."""
    def value(key):
        surface, setting = key.split("|")
        return str(defaults[setting]) if "--help" in surface else defaults[setting]

    return {key: value(key) for key in seen}


def test_every_surface_shows_the_dataclass_defaults(tiny_index):
    seen = surfaces(tiny_index)
    assert seen == expected(seen, dataclasses.asdict(SearchSettings()))
    assert {key.split("|")[0] for key in seen} == {
        "lexedge search --help", "lexedge search", "lexedge eval --help", "lexedge eval",
        "lexedge demo --help", "lexedge demo", "lexedge tui --help", "lexedge tui",
        "EvalConfig", "tui SearchControls", "Searcher.search"}


def test_changing_a_default_in_the_dataclass_changes_every_surface(tiny_index):
    # A fresh process whose SearchSettings declares other defaults, as if its source said so.
    script = f"""
import dataclasses, json, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from lexedge.runtime.settings import SearchSettings
changed = {CHANGED!r}
names = [f.name for f in dataclasses.fields(SearchSettings)]
SearchSettings.__init__.__defaults__ = tuple(
    changed.get(n, d) for n, d in zip(names, SearchSettings.__init__.__defaults__))
for name, value in changed.items():
    SearchSettings.__dataclass_fields__[name].default = value
    setattr(SearchSettings, name, value)
import test_search_settings as spec
print(json.dumps(spec.surfaces({str(tiny_index)!r}), default=str))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    defaults = dataclasses.asdict(SearchSettings()) | CHANGED
    wrong = {key: value for key, value in seen.items()
             if value != expected(seen, defaults)[key]}
    assert not wrong, f"these surfaces restate a default instead of reading SearchSettings: {wrong}"


def test_the_searcher_declares_no_default_of_its_own():
    from lexedge.runtime.searcher import Searcher

    parameters = inspect.signature(Searcher.search).parameters
    assert list(parameters) == ["self", "query", "settings", "overrides"]
    assert parameters["settings"].default is None
    assert parameters["overrides"].kind is inspect.Parameter.VAR_KEYWORD


def test_a_settings_object_and_keywords_ask_the_same(tiny_index):
    from lexedge.runtime.searcher import Searcher

    searcher = Searcher(tiny_index)
    query = "法律 権利 個人データ"
    by_object = searcher.search(query, SearchSettings(budget=3, top=2))
    by_keywords = searcher.search(query, budget=3, top=2)
    mixed = searcher.search(query, SearchSettings(budget=3), top=2)
    assert [h.id for h in by_object.hits] == [h.id for h in by_keywords.hits] \
        == [h.id for h in mixed.hits]
    assert len(by_object.hits) == 2 and by_object.settings["budget"] == 3


@pytest.mark.parametrize("changes,message", [
    ({"budget": 0}, "budget 0: must be a positive integer"),
    ({"budget": True}, "budget True: must be a positive integer"),
    ({"top": 2.5}, "top 2.5: must be a positive integer"),
    ({"rerank": -1}, "rerank -1: must be a non-negative integer"),
    ({"rerank_tokens": 0}, "rerank tokens 0: must be a positive integer"),
    ({"alpha": -0.5}, "alpha -0.5: must be within [0, 1]"),
    ({"alpha": math.inf}, "alpha inf: must be within [0, 1]"),
    ({"rerank_weight": "1"}, "rerank weight '1': must be within [0, 1]"),
    ({"fusion": "max"}, "fusion 'max': must be one of weighted, rrf"),
    ({"filters": {"law": 1}}, "filters {'law': 1}: must map metadata names to text")])
def test_a_bad_setting_is_one_line_naming_it_wherever_it_is_given(tiny_index, changes,
                                                                   message):
    from lexedge.runtime.evaluation import EvalConfig
    from lexedge.runtime.searcher import Searcher

    attempts = [lambda: SearchSettings(**changes), lambda: SearchSettings().replace(**changes),
                lambda: Searcher(tiny_index).search("労働時間", **changes)]
    if "filters" not in changes and "top" not in changes:
        attempts.append(lambda: EvalConfig(data_dir="DATA", **changes))
    for attempt in attempts:
        with pytest.raises(LexedgeError) as caught:
            attempt()
        assert str(caught.value) == message


def test_settings_cannot_change_under_a_search():
    filters = {"law": "民法"}
    settings = SearchSettings(filters=filters)
    filters["law"] = "刑法"
    assert settings.filters == {"law": "民法"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.budget = 5


def test_an_unknown_setting_is_a_type_error(tiny_index):
    from lexedge.runtime.searcher import Searcher

    with pytest.raises(TypeError, match="budgett"):
        Searcher(tiny_index).search("労働時間", budgett=5)
    with pytest.raises(TypeError, match="expected SearchSettings"):
        Searcher(tiny_index).search("労働時間", 50)
