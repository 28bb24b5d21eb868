#!/usr/bin/env python3
"""Regenerate docs/support_matrix.md from the model corpus (tests/test_zoo.py).

The matrix is never typed by hand: this runs the corpus test with
RNNSKIP_WRITE_SUPPORT_MATRIX=1, which converts every corpus file (or checks its
refusal) and writes the table from the results. Without the variable the same test
fails when the committed file differs from what the corpus gives.

    .venv/bin/python tools/support_matrix.py
"""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    env = dict(os.environ, RNNSKIP_WRITE_SUPPORT_MATRIX="1")
    cmd = [sys.executable, "-m", "pytest", "-q", "tests/test_zoo.py"] + sys.argv[1:]
    rc = subprocess.call(cmd, cwd=ROOT, env=env)
    if rc == 0:
        print(f"wrote {ROOT / 'docs' / 'support_matrix.md'}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
