"""plots/report.py and plots/provenance.py: the write-up quotes only what code rendered."""

import json
from decimal import Decimal
from pathlib import Path

import pytest

from plots import provenance, report

ROOT = Path(__file__).resolve().parents[1]


def test_numbers_of_the_prose_are_decimals_scientific_and_percentages_outside_code_and_blocks():
    text = ("KDiffE 0.1086 ± 0.0012, p = 5e-5, +0.0146 and 7.3 % of 6,130 users over 5 seeds, "
            "`--set theta2=1e-5`, v1.2.1, 2026-11-29, Eq. 14, [a](figures/x_0.5.png).\n"
            "<!-- rendered: x.md -->\n0.5555\n<!-- /rendered -->\n")
    assert report.numbers(text) == ["0.1086", "0.0012", "5e-5", "+0.0146", "7.3 %"]


def test_a_number_matches_a_rendered_one_at_the_precision_written():
    values = report.rendered_values(["| 0.10861 | 5.23e-05 | -0.01459 | 7.3 |"])
    assert report.matches("0.1086", values) and report.matches("5e-5", values)
    assert report.matches("+0.0146", values) and report.matches("7.3 %", values)
    assert not report.matches("0.1087", values) and not report.matches("0.10862", values)
    assert not report.matches("6e-5", values)


def test_a_trial_id_that_reads_as_a_huge_exponent_is_no_number():
    values = report.rendered_values(["trial_id,recall\n08e1879178,0.1137\n"])
    assert values == [Decimal("0.1137")] and not report.matches("8e1879178", values)


def test_splice_fills_blocks_and_check_names_stale_blocks_and_unrendered_numbers(tmp_path):
    (tmp_path / "t.md").write_text("| a | 0.1234 |\n")
    (tmp_path / "n.csv").write_text("x\n0.000142\n")
    doc = "Ours 0.1234, p = 1.4e-4.\n<!-- rendered: t.md -->\nold 0.9999\n<!-- /rendered -->\nAlso 0.4321.\n"
    assert report.stale_blocks(doc, tmp_path) == ["t.md"]
    spliced = report.splice(doc, tmp_path)
    assert "<!-- rendered: t.md -->\n| a | 0.1234 |\n<!-- /rendered -->" in spliced and "0.9999" not in spliced
    assert report.check(spliced, tmp_path) == ["number 0.4321 appears in no rendered file"]
    with pytest.raises(report.ReportError, match="missing.md: quoted by the write-up but not rendered"):
        report.splice("<!-- rendered: missing.md -->\n<!-- /rendered -->", tmp_path)


def test_the_cli_splices_then_checks_and_exits_1_on_a_problem(tmp_path, capsys):
    figures = tmp_path / "figures"
    figures.mkdir()
    (figures / "t.md").write_text("0.5\n")
    doc = tmp_path / "doc.md"
    doc.write_text("<!-- rendered: t.md -->\n<!-- /rendered -->\nquoted 0.5, invented 0.25\n")
    assert report.main([str(doc), "--figures", str(figures), "--check"]) == 1
    assert "block t.md differs" in capsys.readouterr().err
    assert report.main([str(doc), "--figures", str(figures)]) == 1  # spliced, 0.25 still invented
    assert "number 0.25 appears in no rendered file" in capsys.readouterr().err
    doc.write_text(doc.read_text().replace(", invented 0.25", ""))
    assert report.main([str(doc), "--figures", str(figures), "--check"]) == 0
    assert report.main([str(tmp_path / "none.md"), "--figures", str(figures)]) == 2


def test_docs_results_md_quotes_only_rendered_numbers():
    problems = report.check((ROOT / "docs" / "results.md").read_text(), ROOT / "docs" / "results" / "figures")
    assert problems == [], "\n".join(problems)


def test_what_ran_lists_every_run_with_its_commit_and_patch(tmp_path):
    runs = [{"commit": "abc1234", "started": "2026-11-29T03:06:24+0000", "wall_seconds": 256.9, "exit": 130},
            {"commit": "def5678+changes", "started": "2026-11-29T04:18:26+0000", "wall_seconds": 2784.9, "exit": 0,
             "patch": "changes-run2.patch"},
            {"commit": "0aa0aa0+changes", "started": "2026-11-30T01:00:00+0000", "wall_seconds": None, "exit": None}]
    (tmp_path / "part-a").mkdir()
    (tmp_path / "part-a" / "experiment.json").write_text(json.dumps({"runs": runs}))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "experiment.json").write_text("{not json")
    table = provenance.what_ran(tmp_path)
    assert list(table["run"]) == [1, 2, 3] and list(table["commit"]) == ["abc1234", "def5678+changes", "0aa0aa0+changes"]
    assert list(table["changes"]) == ["", "changes-run2.patch", "not recorded"]
    assert list(table["wall minutes"])[:2] == [4.3, 46.4] and table["started"][0] == "2026-11-29 03:06"
    md, _ = provenance.write_what_ran(tmp_path, tmp_path / "out")
    assert "| part-a | 3 | 2026-11-30 01:00 |  | running or killed | 0aa0aa0+changes | not recorded |" in md.read_text()


def test_a_run_from_a_checkout_with_changes_saves_them_as_a_patch(tmp_path, monkeypatch):
    import subprocess

    from tune import store

    diff = "diff --git a/kdiffe/model.py b/kdiffe/model.py\n-old\n+new\n"

    def git(*args):
        out = {"rev-parse": "abc1234\n", "diff": diff}[args[0]]
        return subprocess.CompletedProcess(["git", *args], 0, out, "")

    monkeypatch.setattr(store, "_git", git)
    record = store.start_record(tmp_path, "tune/search.py", ["tune/search.py"], {"dataset": "x"})
    record = store.start_record(tmp_path, "tune/search.py", ["tune/search.py", "--resume"], {}, record)
    runs = json.loads((tmp_path / "experiment.json").read_text())["runs"]
    assert [r["commit"] for r in runs] == ["abc1234+changes"] * 2
    assert [r["patch"] for r in runs] == ["changes-run1.patch", "changes-run2.patch"]
    assert (tmp_path / "changes-run2.patch").read_text() == diff
    diff = ""  # a clean checkout: no patch, no "+changes"
    store.start_record(tmp_path, "tune/search.py", ["tune/search.py", "--resume"], {}, record)
    last = json.loads((tmp_path / "experiment.json").read_text())["runs"][-1]
    assert last["commit"] == "abc1234" and "patch" not in last


def test_plots_modules_import_each_other_without_a_cycle():
    import ast

    modules = {p.stem: p for p in (ROOT / "plots").glob("*.py") if p.stem != "__init__"}
    graph = {}
    for name, path in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "plots":
                deps |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("plots."):
                deps.add(node.module.split(".")[1])
        graph[name] = deps & set(modules)
    assert "figures" not in set().union(*graph.values())  # the render command: nothing imports it
    assert not any("matplotlib" in modules[m].read_text() for m in ("aggregate", "panels", "claims", "verdicts", "tables"))
    seen, done = set(), set()

    def visit(node, path):
        assert node not in path, f"import cycle: {' -> '.join(path + [node])}"
        if node in done:
            return
        for dep in graph[node]:
            visit(dep, path + [node])
        done.add(node)

    for name in graph:
        visit(name, [])
