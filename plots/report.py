"""Keep a write-up (docs/results.md) true to the rendered files it quotes.

    python plots/report.py docs/results.md --figures docs/results/figures           # splice, then check
    python plots/report.py docs/results.md --figures docs/results/figures --check   # check only (exit 1)

Two rules:

- A block between ``<!-- rendered: NAME -->`` and ``<!-- /rendered -->`` is the rendered file
  ``NAME`` (under ``--figures``) verbatim: splicing rewrites it, checking compares.
- Every number of the prose outside those blocks (a decimal such as 0.1086, one in scientific
  notation such as 5e-5, a percentage such as 7.3 %) must appear in some rendered file (``.md`` or
  ``.csv`` under ``--figures``) at the precision the prose gives it: 0.0958 matches a rendered
  0.09581, 5e-5 matches 5.23e-05, "+0.0146" matches 0.0146. Integers (counts, seeds, epochs) and
  text in code spans (commands, paths, settings) are not checked.
"""

from __future__ import annotations

import argparse
import re
import sys
from decimal import Decimal
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kdiffe.errors import UserError, report  # noqa: E402
from kdiffe.files import write_atomic  # noqa: E402

BLOCK = re.compile(r"(<!-- rendered: (?P<name>[\w.\-]+) -->\n)(?P<body>.*?)(<!-- /rendered -->)", re.S)
NUMBER = re.compile(r"(?<![\w.\-+])[-+]?(?:\d+\.\d+|\.\d+|\d+)(?:e[-+]?\d+)?(?:\s?%)?(?![\w.]*\d)")
CODE = re.compile(r"`[^`\n]*`|\]\([^)\n]*\)|<!--.*?-->", re.S)


class ReportError(UserError):
    """A write-up that does not match its rendered files."""


def _rendered_file(figures: Path, name: str) -> str:
    path = figures / name
    if not path.is_file():
        raise ReportError(f"{path}: quoted by the write-up but not rendered")
    return path.read_text()


def splice(text: str, figures: Path) -> str:
    """``text`` with every rendered block replaced by its file's current content."""
    def fill(match: re.Match) -> str:
        body = _rendered_file(figures, match["name"])
        return match.group(1) + body + ("" if body.endswith("\n") else "\n") + match.group(4)
    return BLOCK.sub(fill, text)


def stale_blocks(text: str, figures: Path) -> list[str]:
    """Names of the rendered blocks whose text differs from their file."""
    return [m["name"] for m in BLOCK.finditer(text)
            if m["body"].rstrip("\n") != _rendered_file(figures, m["name"]).rstrip("\n")]


def prose(text: str) -> str:
    """``text`` without rendered blocks, code spans, link targets and comments."""
    return CODE.sub(" ", BLOCK.sub(" ", text))


def _is_checked(token: str) -> bool:
    """A decimal, scientific or percentage number (integers are counts, not measurements)."""
    return "." in token or "e" in token or "%" in token


def numbers(text: str) -> list[str]:
    """The checked numbers of ``text``'s prose, as written."""
    return [t for t in NUMBER.findall(prose(text)) if _is_checked(t)]


def _value(token: str) -> tuple[Decimal, int] | None:
    """(absolute value, decimal exponent of its last digit) of a written number, or None."""
    token = token.replace("%", "").strip().lstrip("+-")
    try:
        value = Decimal(token)
        return abs(value), value.as_tuple().exponent
    except ArithmeticError:  # not a number (InvalidOperation), or a trial id such as 08e1879178 (Overflow)
        return None


def rendered_values(texts: list[str]) -> list[Decimal]:
    """Every number of the rendered texts (as absolute values)."""
    found = []
    for text in texts:
        for token in NUMBER.findall(text):
            parsed = _value(token)
            if parsed is not None:
                found.append(parsed[0])
    return found


def matches(token: str, values: list[Decimal]) -> bool:
    """Whether ``token`` is one of ``values`` rounded to the digits ``token`` shows."""
    parsed = _value(token)
    if parsed is None:
        return False
    target, exponent = parsed
    quantum = Decimal(1).scaleb(exponent)
    for value in values:
        if value.is_finite() and abs(value - target) <= quantum / 2 + quantum * Decimal("1e-9"):
            return True
    return False


def unrendered(text: str, figures: Path) -> list[str]:
    """The numbers of ``text``'s prose that no rendered file under ``figures`` holds."""
    texts = [p.read_text() for p in sorted(figures.glob("*")) if p.suffix in (".md", ".csv")]
    values = rendered_values(texts)
    return list(dict.fromkeys(t for t in numbers(text) if not matches(t, values)))


def check(text: str, figures: Path) -> list[str]:
    """Every problem of the write-up, one line each (empty: it is true to its rendered files)."""
    problems = [f"block {name} differs from {figures / name}: splice it" for name in stale_blocks(text, figures)]
    problems += [f"number {token} appears in no rendered file" for token in unrendered(text, figures)]
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="plots/report.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("doc", type=Path)
    parser.add_argument("--figures", type=Path, required=True, help="folder of the rendered files")
    parser.add_argument("--check", action="store_true", help="only check; exit 1 when something differs")
    args = parser.parse_args(argv)
    try:
        if not args.doc.is_file():
            raise ReportError(f"{args.doc}: no such file")
        if not args.figures.is_dir():
            raise ReportError(f"--figures {args.figures}: not a folder")
        text = args.doc.read_text()
        if not args.check:
            spliced = splice(text, args.figures)
            if spliced != text:
                write_atomic(args.doc, spliced)
                print(f"spliced {args.doc}")
            text = spliced
        problems = check(text, args.figures)
    except UserError as exc:
        return report(exc)
    for line in problems:
        print(f"{args.doc}: {line}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
