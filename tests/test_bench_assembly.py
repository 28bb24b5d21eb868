"""make bench's assembly of BENCHMARKS.md and README.md's summary: a section measured in this checkout
replaces its own text only; the others keep theirs (a fresh clone has no bench_out/, and
``--only NAME`` must not drop them)."""
import json
import shutil
import types

import pytest

from benchmarks import run_all

README = "# x\n\n<!-- bench:start -->\n- old\n<!-- bench:end -->\ntail\n"


def _section(name: str, value: int):
    return types.SimpleNamespace(run=lambda quick=False: {"v": value},
                                 markdown=lambda res: f"## {name.title()}\n\nvalue {res['v']}",
                                 summary=lambda res: [f"- {name}: {res['v']}", ""])


@pytest.fixture
def repo(tmp_path, monkeypatch):
    (tmp_path / "README.md").write_text(README)
    monkeypatch.setattr(run_all, "repo_root", lambda: str(tmp_path))

    def bench_out(sub=None):
        path = tmp_path / "bench_out" / (sub or "")
        path.mkdir(parents=True, exist_ok=True)
        return str(path)
    monkeypatch.setattr(run_all, "bench_out", bench_out)
    monkeypatch.setattr(run_all, "provenance", lambda: "commit test")
    monkeypatch.setattr(run_all, "SECTIONS", [("alpha", _section("alpha", 1)), ("beta", _section("beta", 2))])
    return tmp_path


def _measure(repo, monkeypatch, name, value, only=True):
    mods = dict(run_all.SECTIONS)
    mods[name] = _section(name, value)
    monkeypatch.setattr(run_all, "SECTIONS", list(mods.items()))
    assert run_all.main(["--only", name] if only else []) == 0


def test_only_keeps_the_other_sections_text_and_summary_from_a_fresh_clone(repo, monkeypatch):
    _measure(repo, monkeypatch, "alpha", 1, only=False)
    shutil.rmtree(repo / "bench_out")     # a fresh clone: BENCHMARKS.md and README.md, no saved results
    _measure(repo, monkeypatch, "beta", 7)
    bench = (repo / "BENCHMARKS.md").read_text()
    assert "<!-- section: alpha -->\n## Alpha\n\nvalue 1\n" in bench
    assert "<!-- section: beta -->\n## Beta\n\nvalue 7\n" in bench
    assert bench.index("## Alpha") < bench.index("## Beta")
    readme = (repo / "README.md").read_text()
    assert "- alpha: 1\n" in readme and "- beta: 7\n" in readme and "- beta: 2" not in readme
    assert readme.endswith("<!-- bench:end -->\ntail\n")
    assert readme.count("Full tables") == 1


def test_reassembly_without_measuring_is_idempotent(repo, monkeypatch):
    _measure(repo, monkeypatch, "alpha", 1, only=False)
    shutil.rmtree(repo / "bench_out")
    before = (repo / "BENCHMARKS.md").read_text(), (repo / "README.md").read_text()
    assert run_all.main(["--rerender"]) == 0
    assert ((repo / "BENCHMARKS.md").read_text(), (repo / "README.md").read_text()) == before


def test_a_file_written_before_the_markers_is_split_at_each_sections_footer(repo, capsys):
    foot = "_2026-12-04 16:57, x86_64, 5307 s; commit 78ffba3, Python 3.11.7_"
    (repo / "BENCHMARKS.md").write_text(f"# rnnskip benchmarks\n\nintro\n\n## A\n\ntext a\n\n{foot}\n\n"
                                        f"## B\n\n| t |\n\n_2026-12-03 06:57, x86_64, 78 s_\n\n")
    md, _ = run_all.recover_sections()
    assert md == {"alpha": f"## A\n\ntext a\n\n{foot}\n", "beta": "## B\n\n| t |\n\n_2026-12-03 06:57, x86_64, 78 s_\n"}
    # one footer for two sections: which text is whose is unknown, so nothing is recovered
    (repo / "BENCHMARKS.md").write_text(f"# rnnskip benchmarks\n\n## A\n\ntext a\n\n{foot}\n")
    assert run_all.recover_sections()[0] == {}
    assert "no section lines and 1 section footers for 2 sections" in capsys.readouterr().out


def test_a_section_with_no_saved_results_and_no_text_is_left_out_and_said_so(repo, monkeypatch, capsys):
    _measure(repo, monkeypatch, "alpha", 3)
    assert "beta: no saved results" in capsys.readouterr().out
    bench = (repo / "BENCHMARKS.md").read_text()
    assert "## Alpha" in bench and "beta" not in bench
    assert json.loads((repo / "bench_out" / "sections" / "alpha.summary.json").read_text()) == ["- alpha: 3", ""]
