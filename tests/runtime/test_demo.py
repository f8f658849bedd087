"""The README's main job: the bundled sample corpus answers a real question."""

import shlex

from lexedge.cli import main


def test_demo_finds_the_consent_article(tmp_path, capsys):
    """The default: the built-in bundle's hybrid search, no export step."""
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    # the consent article among the first three (the built-in student ranks 第三十一条, the
    # provision of person-related information to third parties, just above it: one query's
    # order is the model's, measured on dev in bench/results/student_depths_L3.md)
    top3 = [line for line in out.splitlines() if line.strip()[:2] in ("1.", "2.", "3.")]
    assert any("個人情報の保護に関する法律 第二十七条" in line for line in top3), out
    # it says where the index went and what to run next (issue 23)
    assert f"The sample's index is {tmp_path / 'demo' / 'index'}. Next:" in out
    assert f"lexedge tui --index {tmp_path / 'demo' / 'index'}" in out
    # the suggested search runs as printed and answers (a placeholder once returned noise)
    suggested = next(line.split("   ")[0].strip() for line in out.splitlines()
                     if line.strip().startswith("lexedge search"))
    assert main(shlex.split(suggested)[1:]) == 0
    assert "個人情報の保護に関する法律 第十七条" in capsys.readouterr().out.split("\n  2.")[0]
    # A second run reuses the index instead of rebuilding it.
    assert main(["demo", "解雇の予告", "--out", str(tmp_path / "demo")]) == 0
    assert "indexing" not in capsys.readouterr().out


def test_demo_serves_hybrid_with_a_bundle_and_rebuilds_for_another(tmp_path, tiny_bundle,
                                                                   capsys):
    import json

    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--bundle", "none"]) == 0
    assert json.loads((out / "index" / "manifest.json").read_text())["bundle"] is None
    assert main(["demo", "--out", str(out), "--bundle", str(tiny_bundle)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("indexing") == 2 and "1." in printed
    assert json.loads((out / "index" / "manifest.json").read_text())["bundle"]["sha256"]


def test_demo_names_an_unknown_bundle(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "d"), "--bundle", "nonesuch"]) == 2
    assert "--bundle nonesuch: not a bundle folder" in capsys.readouterr().err
