"""Progress bars (tqdm) on stderr, alike in every long stage: in a terminal they redraw in place and are
cleared when done; in a log (stderr not a terminal) each bar keeps its last state on a line of its own, with no
cursor movement between bars; TQDM_DISABLE=1 (tqdm's own switch) turns them off, as in a CI log that wants none."""
from __future__ import annotations

import os
import sys

from tqdm import tqdm


def bar(iterable=None, *, total=None, desc: str, unit: str = "seq", enabled: bool = True, position: int = 0):
    """A bar over ``iterable`` (or ``total`` steps, updated by hand) when ``enabled`` and not switched off."""
    tty = sys.stderr.isatty()
    off = os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false")
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not enabled or off, leave=not tty,
                position=position if tty else 0)   # 0: no cursor movement, each bar on the line it ends
