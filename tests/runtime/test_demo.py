"""The README's main job: the bundled sample corpus answers a real question."""

from lexedge.cli import main


def test_demo_finds_the_consent_article(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    first_hit = next(line for line in out.splitlines() if line.strip().startswith("1."))
    assert "個人情報の保護に関する法律 第二十七条" in first_hit
    # A second run reuses the index instead of rebuilding it.
    assert main(["demo", "解雇の予告", "--out", str(tmp_path / "demo")]) == 0
    assert "indexing" not in capsys.readouterr().out
