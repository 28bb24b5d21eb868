"""Progress bars (tqdm) on stderr, alike in every long stage: in a terminal they redraw in place and are
cleared when done; in a log (stderr not a terminal) a bar writes a plain line at most every
:data:`LOG_INTERVAL_S` seconds and its last state when done, with no carriage returns or cursor movement
(a user's CI log was a wall of redraws joined by \\r); TQDM_DISABLE=1 (tqdm's own switch) turns them off."""
from __future__ import annotations

import os
import re
import sys

from tqdm import tqdm

#: seconds between a bar's lines in a log
LOG_INTERVAL_S = 30.0


class _Lines:
    """A file for tqdm that turns its redraws (each write is a whole status after a \\r) into lines of their own,
    written at once (a log shows a stage as it starts)."""

    def __init__(self, f):
        self.f = f
        self.encoding = getattr(f, "encoding", "utf-8")

    def write(self, s: str) -> None:
        for p in re.split(r"[\r\n]", s):
            if p.strip():
                self.f.write(p.rstrip() + "\n")

    def flush(self) -> None:
        self.f.flush()


def bar(iterable=None, *, total=None, desc: str, unit: str = "seq", enabled: bool = True, position: int = 0):
    """A bar over ``iterable`` (or ``total`` steps, updated by hand) when ``enabled`` and not switched off.
    Its rate is the mean since the start (smoothing 0): a first item slower than the rest (start-up, a
    sequence whose memory traffic is counted) otherwise sets the time left for the whole run."""
    tty = sys.stderr.isatty()
    off = os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false")
    if tty:
        return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not enabled or off, leave=False,
                    position=position, smoothing=0)
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not enabled or off, leave=True, position=0,
                smoothing=0, file=_Lines(sys.stderr), mininterval=LOG_INTERVAL_S,
                maxinterval=LOG_INTERVAL_S, ncols=100, ascii=True)   # tqdm's monitor would refresh every 10 s
