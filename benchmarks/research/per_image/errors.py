"""Bad input to a job: one line on stderr and exit status 2 (as argparse's own errors), no traceback."""

from __future__ import annotations

import sys
from typing import NoReturn


def fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)
