import re

from conftest import ROOT
from kdiffe.errors import UserError


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, re.S)
    test_command = next(b.strip() for b in blocks if "pytest" in b)
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test_command in ci_lines
    assert "torch==2.13.0" in (ROOT / ".ci" / "run").read_text()


def readme_commands() -> list[list[str]]:
    """Every command line of the README's bash blocks, split as a shell would (comments dropped)."""
    import shlex

    readme = (ROOT / "README.md").read_text()
    lines = [line for block in re.findall(r"```bash\n(.*?)```", readme, re.S) for line in block.splitlines()]
    commands = []
    for line in lines:
        for part in line.split("&&"):
            words = shlex.split(part, comments=True)
            while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):  # VAR=value prefixes
                words = words[1:]
            if words:
                commands.append(words)
    return commands


def parser_of(words: list[str]):
    """(the argparse parser of a README command of ours, its arguments), or None for pip, pytest, ray."""
    import importlib

    from tune.cli import build_parser

    if words[0] != "python" or words[1] == "-c" or words[1:3] == ["-m", "pytest"]:
        return None
    if words[1:3] == ["-m", "kdiffe"]:
        from kdiffe.cli import build_parser as kdiffe_parser

        return kdiffe_parser(), words[3:]
    module = words[1].removesuffix(".py").replace("/", ".")
    loaded = importlib.import_module(module)
    if hasattr(loaded, "SCRIPT"):
        return build_parser(loaded.SCRIPT), words[2:]
    return loaded.build_parser(), words[2:]


def test_every_readme_command_of_ours_parses_as_written():
    """Each option of each README command exists and takes the value written there (no run)."""
    checked = 0
    for words in readme_commands():
        found = parser_of(words)
        if found is None:
            assert words[0] in ("pip", "ray", "export") or "pytest" in words, words
            continue
        parser, argv = found
        try:
            parser.parse_args(argv)
        except (SystemExit, UserError) as exc:  # argparse's own parsers exit; ours raise UserError
            raise AssertionError(f"README command {' '.join(words)!r} does not parse: {exc}") from None
        checked += 1
    assert checked >= 25


def test_the_readme_synthetic_training_runs_as_written_with_one_epoch(tmp_path, monkeypatch, capsys):
    from kdiffe.cli import main

    words = next(w for w in readme_commands() if w[:4] == ["python", "-m", "kdiffe", "train"] and "synthetic" in w)
    argv = words[3:]
    argv[argv.index("--epochs") + 1] = "1"
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 0
    assert "test" in capsys.readouterr().out.lower()


def test_the_readme_dry_runs_run_as_written(datasets_dir):
    """Each README command with --dry-run, run from the repository root as a user would: exit 0, a plan."""
    import os
    import subprocess
    import sys

    dry = [w for w in readme_commands() if "--dry-run" in w and w[0] == "python"]
    assert len(dry) >= 2
    env = {**os.environ, "KDIFFE_DATA_DIR": str(datasets_dir)}
    for words in dry:
        proc = subprocess.run([sys.executable, *words[1:]], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, (words, proc.stderr[-2000:])
        assert "trial-epochs" in proc.stdout, words
