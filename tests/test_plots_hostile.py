"""plots/ against untrusted results files: impossible values, markdown and spreadsheet injection,
header-only files, folders and FIFOs named results.csv. A user meets each one through
``python plots/figures.py``: one line ``error: ...`` and exit 2, or a clean render."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import kdiffe
from kdiffe.results import COLUMNS, result_row
from plots import figures, tables

ROOT = Path(__file__).resolve().parents[1]


def trial(experiment: str, trial_id: str, evaluations, *, kind: str = "ablation", **config) -> list[dict]:
    """Rows of one trial: ``evaluations`` are (epoch, val Recall@20, test Recall@20); NDCG = recall / 2."""
    cfg = kdiffe.Config(**config).to_dict()
    return [result_row(experiment, trial_id, cfg, {"epoch": e, "val_recall@20": v, "val_ndcg@20": v / 2,
                                                    "test_recall@20": t, "test_ndcg@20": t / 2,
                                                    "seconds_per_epoch": 1.0}, kind=kind, n_users=100, n_items=60)
            for e, v, t in evaluations]


def write(folder: Path, rows: list[dict]) -> pd.DataFrame:
    folder.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame.to_csv(folder / "results.csv", index=False)
    return frame


def render(results: Path, out: Path) -> tuple[int, str]:
    """figures.main in process: (exit code, stderr)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = figures.main(["--results", str(results), "--out", str(out), "--formats", "png"])
    return code, err.getvalue()


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "plots/figures.py", *args, "--formats", "png"], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


# ------------------------------------------------------------------------------------- 1. values
def clean_rows() -> list[dict]:
    """Row 1-2: one ok trial; row 3: a failed trial (no measurements); row 4: a failed trial whose
    identity was lost (no configuration either, as tune/store.py writes it)."""
    rows = trial("abl", "a0", [(1, 0.2, 0.1), (2, 0.3, 0.2)], dataset="synthetic", seed=0)
    rows.append(result_row("abl", "a1", kdiffe.Config(M=80).to_dict(), {}, kind="ablation", status="error",
                           error="RuntimeError: boom"))
    rows.append({"trial_id": "a2", "status": "error", "error": "lost"})
    return rows


def with_cell(frame: pd.DataFrame, column: str, row: int, value) -> pd.DataFrame:
    frame = frame.copy()
    frame[column] = frame[column].astype(object)
    frame.loc[row - 1, column] = value
    return frame


def test_an_infinite_validation_metric_is_refused_not_the_best(tmp_path):
    frame = write(tmp_path / "r" / "abl", clean_rows())
    old = frame.drop(columns=["resplit_holdout", "kg", "kg_entities"])  # a file from before those columns
    old.to_csv(tmp_path / "r" / "abl" / "results.csv", index=False)
    assert render(tmp_path / "r", tmp_path / "out")[0] == 0  # error rows' empty cells and old files are fine
    with_cell(frame, "val_recall@20", 1, float("inf")).to_csv(tmp_path / "r" / "abl" / "results.csv", index=False)
    proc = cli("--results", str(tmp_path / "r"), "--out", str(tmp_path / "out2"))
    assert proc.returncode == 2
    path = tmp_path / "r" / "abl" / "results.csv"
    assert one_error_line(proc.stderr) == f"error: {path}: column val_recall@20, row 1: inf is not a number in [0, 1]"
    assert not (tmp_path / "out2").exists()


@pytest.mark.parametrize("column, row, value, message", [
    ("epoch", 2, -1, "column epoch, row 2: -1 is not a positive integer"),
    ("epoch", 1, 1.5, "column epoch, row 1: 1.5 is not an integer (64-bit)"),
    ("epoch", 2, "", 'column epoch, row 2: empty on a row with status "ok"'),
    ("test_ndcg@20", 2, 1.5, "column test_ndcg@20, row 2: 1.5 is not a number in [0, 1]"),
    ("test_recall@50", 1, -0.1, "column test_recall@50, row 1: -0.1 is not a number in [0, 1]"),
    ("val_recall@20", 2, float("nan"), 'column val_recall@20, row 2: empty on a row with status "ok"'),
    ("seconds_per_epoch", 2, float("-inf"), "column seconds_per_epoch, row 2: -inf is not a finite number >= 0"),
    ("wall_time", 1, -3.0, "column wall_time, row 1: -3 is not a finite number >= 0"),
    ("n_users", 2, -5, "column n_users, row 2: -5 is not an integer >= 0"),
    ("n_items", 3, 2.5, "column n_items, row 3: 2.5 is not an integer (64-bit)"),
    ("q", 2, 1e30, "column q, row 2: 1e+30 is not an integer (64-bit)"),
    ("M", 2, -3, "column M, row 2: M=-3: must be a positive integer"),
    ("xi", 3, float("inf"), "column xi, row 3: xi=inf: must be a finite number"),
    ("restart", 1, 1.0, "column restart, row 1: restart=1.0: restart probability must be in [0, 1)"),
    ("kg", 1, "wikidata", "column kg, row 1: kg='wikidata': choose from features, file, none"),
    ("status", 2, "OK", "column status, row 2: 'OK' is not one of ok, partial, error"),
    ("kind", 1, "Grid", "column kind, row 1: 'Grid' is not one of search, grid, ablation, scalability, retrain"),
])
def test_impossible_values_fail_naming_file_column_row_and_value(tmp_path, column, row, value, message):
    folder = tmp_path / "r" / "abl"
    frame = write(folder, clean_rows())
    with_cell(frame, column, row, value).to_csv(folder / "results.csv", index=False)
    code, err = render(tmp_path / "r", tmp_path / "out")
    assert code == 2
    assert one_error_line(err) == f"error: {folder / 'results.csv'}: {message}"


# --------------------------------------------------------------------------------- 2. markdown
EVIL = "evil|x\n## Owned <script>alert(1)</script> & co\\"
EVIL_MD = "evil\\|x ## Owned &lt;script>alert(1)&lt;/script> &amp; co\\\\"


def test_markdown_text_escapes_cells():
    assert tables.markdown_text("a|b\r\nc<d>&e\\") == "a\\|b  c&lt;d>&amp;e\\\\"
    assert tables.markdown_text("0.1086 ± 0.0012") == "0.1086 ± 0.0012"


def test_text_from_results_cannot_break_rendered_markdown(tmp_path):
    rows = [r for seed, recall in ((0, 0.10), (1, 0.14)) for variant, drop in (("kdiffe", 0.0), ("no_cl", 0.02))
            for r in trial("abl", f"{variant}-{seed}", [(1, 0.2, recall - drop)], dataset=EVIL, variant=variant,
                           seed=seed)]
    write(tmp_path / "r" / "abl", rows)
    code, err = render(tmp_path / "r", tmp_path / "out")
    assert code == 0, err
    table_ii = (tmp_path / "out" / "table_ii.md").read_text().splitlines()
    assert len(table_ii) == 4  # header, rule, kdiffe, no_cl: no new heading, no split row
    assert table_ii[2] == f"| {EVIL_MD} | kdiffe | 2 | 0.1200 ± 0.0283 | 0.0600 ± 0.0141 | 0.1200 |  |  |"
    for name in ("table_ii.md", "table_iii.md", "table_protocols.md", "claims.md"):
        text = (tmp_path / "out" / name).read_text()
        assert "<script>" not in text and "\n## " not in text, name
        assert EVIL_MD in text, name
    heading = (tmp_path / "out" / "table_iii.md").read_text().splitlines()[0]
    assert heading == f"### Table III: {EVIL_MD}"
    claims = (tmp_path / "out" / "claims.md").read_text()
    assert f"| KDiffE > KDiffE w/o CL on {EVIL_MD} (Recall@20) | Table III |" in claims  # the code's own '>' kept


# ------------------------------------------------------------------------------------ 3. CSV
def test_write_csv_neutralises_formulas_but_never_numbers(tmp_path):
    table = pd.DataFrame({"text": ["=1+1", "-0.0034", "-x", "@SUM(A1)", "+cmd", "\tz", "\rw", "ok", "+5", "-inf", "x\r=cmd"],
                          "number": [-0.0034, 1.5, -2.0, 0.0, 3.0, -1e-05, 2.0, 1.0, 4.0, 5.0, 6.0]})
    path = tables.write_csv(table, tmp_path / "t.csv")
    with open(path, newline="") as handle:
        cells = list(csv.reader(handle))
    assert [r[0] for r in cells[1:]] == ["'=1+1", "-0.0034", "'-x", "'@SUM(A1)", "'+cmd", "'\tz", "'\nw", "ok", "+5",
                                         "-inf", "x\n=cmd"]  # a bare CR would start a new row in readers
    assert [r[1] for r in cells[1:]] == ["-0.0034", "1.5", "-2.0", "0.0", "3.0", "-1e-05", "2.0", "1.0", "4.0", "5.0",
                                         "6.0"]


def test_rendered_csvs_hold_no_formula(tmp_path):
    formula = "=cmd|' /C calc'!A0"
    rows = [r for seed in (0, 1) for r in trial("abl", f"k{seed}", [(1, 0.2, 0.25 + 0.5 * seed)], dataset=formula,
                                                 seed=seed)]
    rows += trial("abl", "n0", [(1, 0.2, 0.1)], dataset="-0.0034", seed=0)
    rows += [r for i, m in enumerate((30, 80)) for r in
             trial("@search", f"=2+{i}", [(1, 0.1 + i / 10, 0.1)], kind="search", dataset="+cmd", M=m, seed=0)]
    write(tmp_path / "r" / "abl", [r for r in rows if r["experiment"] == "abl"])
    write(tmp_path / "r" / "search", [r for r in rows if r["experiment"] == "@search"])
    code, err = render(tmp_path / "r", tmp_path / "out")
    assert code == 0, err
    with open(tmp_path / "out" / "table_ii.csv", newline="") as handle:
        table = {r["dataset"]: r for r in csv.DictReader(handle)}
    assert set(table) == {"'" + formula, "-0.0034"}
    assert table["'" + formula]["recall@20"] == "0.5" and table["'" + formula]["ndcg@20"] == "0.25"
    with open(tmp_path / "out" / "search_search.csv", newline="") as handle:
        search = list(csv.DictReader(handle))
    assert [(r["experiment"], r["dataset"], r["trial_id"], r["M"]) for r in search] == \
        [("'@search", "'+cmd", "'@search/=2+0", "30"), ("'@search", "'+cmd", "'@search/=2+1", "80")]
    for path in (tmp_path / "out").glob("*.csv"):
        with open(path, newline="") as handle:
            for row in csv.reader(handle):
                for cell in row:
                    if cell[:1] in ("=", "+", "-", "@", "\t", "\r"):
                        float(cell)  # only numbers may start so


# ----------------------------------------------------------------------------- 4. file kinds
def test_header_only_results_render_as_no_data(tmp_path):
    (tmp_path / "r" / "empty").mkdir(parents=True)
    pd.DataFrame(columns=COLUMNS).to_csv(tmp_path / "r" / "empty" / "results.csv", index=False)
    proc = cli("--results", str(tmp_path / "r"), "--out", str(tmp_path / "out"))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    notes = proc.stderr.strip().splitlines()
    assert notes[0] == f"{tmp_path / 'r' / 'empty' / 'results.csv'} skipped: no rows yet"
    assert "table II skipped: no ablation rows" in proc.stderr and "figure 6 skipped" in proc.stderr
    write(tmp_path / "r" / "abl", clean_rows())  # beside an experiment with rows: only the note
    code, err = render(tmp_path / "r", tmp_path / "out2")
    assert code == 0 and err.splitlines()[0].endswith("empty/results.csv skipped: no rows yet")
    assert "| synthetic | kdiffe | 1 | 0.2000 |" in (tmp_path / "out2" / "table_ii.md").read_text()


def test_a_folder_named_results_csv_is_refused(tmp_path):
    write(tmp_path / "r" / "abl", clean_rows())
    (tmp_path / "r" / "zzz" / "results.csv").mkdir(parents=True)
    proc = cli("--results", str(tmp_path / "r"), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    folder = tmp_path / "r" / "zzz" / "results.csv"
    assert one_error_line(proc.stderr) == f"error: {folder}: not a regular file (a directory)"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_named_results_csv_is_refused_without_hanging(tmp_path):
    (tmp_path / "r" / "pipe").mkdir(parents=True)
    fifo = tmp_path / "r" / "pipe" / "results.csv"
    os.mkfifo(fifo)
    for results in (tmp_path / "r", fifo):  # found in a folder, or named directly
        proc = cli("--results", str(results), "--out", str(tmp_path / "out"), timeout=60)  # a hang fails here
        assert proc.returncode == 2
        assert one_error_line(proc.stderr) == f"error: {fifo}: not a regular file (a FIFO)"
