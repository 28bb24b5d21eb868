#!/usr/bin/env python3
"""Regenerate docs/support_matrix.md from the model corpus (tests/test_zoo.py), and
docs/onnx_support.md from the ONNX import tests (tests/test_onnx_import.py).

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
    onnx_cmd = [sys.executable, "-m", "pytest", "-q", "tests/test_onnx_import.py", "-k", "test_onnx_support_matrix"]
    rc_onnx = subprocess.call(onnx_cmd, cwd=ROOT, env=env)
    if rc_onnx == 0:
        print(f"wrote {ROOT / 'docs' / 'onnx_support.md'}")
    return rc or rc_onnx


if __name__ == "__main__":
    sys.exit(main())
