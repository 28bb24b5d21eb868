#!/usr/bin/env python3
"""make lint: the style gate CI runs before the tests, changing no file.

* ruff (pyflakes, pycodestyle, import order, 120 columns; pyproject.toml) on the Python;
* clang-format (.clang-format) on the kernels and the cells' C kernels;
* tests/test_c_style.py: clang-format on the C the generator and the board/runtime
  templates write, for every template path.

    .venv/bin/python tools/lint.py
"""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def run(what: str, cmd) -> bool:
    p = subprocess.run([str(c) for c in cmd], cwd=ROOT, capture_output=True, text=True)
    ok = p.returncode == 0
    print(f"{'ok  ' if ok else 'FAIL'} {what}")
    if not ok:
        print((p.stdout + p.stderr).strip()[-4000:])
    return ok


def main() -> int:
    c_files = sorted((ROOT / "rnnskip" / "kernels").rglob("*.[ch]")) + sorted((ROOT / "rnnskip" / "cells").glob("*.h"))
    ok = run("ruff", [BIN / "ruff", "check", "rnnskip", "benchmarks", "tests", "tools", "examples"])
    ok &= run(f"clang-format: {len(c_files)} kernel files",
              [BIN / "clang-format", f"--style=file:{ROOT / '.clang-format'}", "--dry-run", "--Werror", *c_files])
    ok &= run("clang-format: generated C (tests/test_c_style.py)",
              [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_c_style.py"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
