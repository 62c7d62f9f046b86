"""The one error type for user mistakes.

Every mistake a user can make (an unknown parameter, an impossible value, a missing or corrupt
file, a results folder that cannot be written) raises a subclass of :class:`UserError`. Entry
points (``python -m kdiffe``, ``tune/*.py``, ``ablations/run.py``, ``plots/figures.py``) turn it
into one line ``error: ...`` on stderr and exit code 2; library code never calls ``sys.exit``.
"""

from __future__ import annotations

import sys

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  #: a run stopped by Ctrl-C or SIGTERM (an experiment resumes from there)


class UserError(ValueError):
    """A user mistake; the message names the parameter or file and the problem, on one line."""


def report(exc: BaseException) -> int:
    """Print ``error: <message>`` as one line on stderr; return the usage exit code (2)."""
    print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
    return EXIT_USAGE
