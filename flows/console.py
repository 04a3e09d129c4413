"""The CLI's consoles: a line never hard-wraps (a path in it stays whole, copyable and greppable), and tables get
120 columns when the output goes to a file or a pipe (rich would assume 80 and clip the summary's headers); on a
terminal they take its width, and ``COLUMNS`` still wins."""

from __future__ import annotations

import os
import sys

from rich.console import Console

PIPED_WIDTH = 120


def make_console(*, stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    tty = getattr(stream, "isatty", lambda: False)()
    width = None if tty or os.environ.get("COLUMNS") else PIPED_WIDTH
    return Console(stderr=stderr, soft_wrap=True, width=width)
