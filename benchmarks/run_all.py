"""make bench: run every benchmark and regenerate BENCHMARKS.md (never edit it by hand)."""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

from rnnskip.errors import RnnskipError

from . import pipeline_bench
from .common import bench_out, repo_root

SECTIONS = [("pipeline", pipeline_bench)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer emulated sequences (smoke run; still writes the file)")
    ap.add_argument("--only", default=None, help="comma-separated sections: " + ",".join(n for n, _ in SECTIONS))
    a = ap.parse_args(argv)
    t0 = time.time()
    parts, results = [], {}
    try:
        for name, mod in SECTIONS:
            if a.only and name not in a.only.split(","):
                continue
            print(f"== benchmark: {name}", flush=True)
            res = mod.run(quick=a.quick)
            results[name] = res
            parts.append(mod.markdown(res))
    except RnnskipError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    Path(bench_out(), "results.json").write_text(json.dumps(results, indent=1, default=float))
    head = ["# rnnskip benchmarks", "",
            f"Written by `make bench` ({time.strftime('%Y-%m-%d')}, {platform.machine()}, "
            f"{time.time() - t0:.0f} s{', --quick' if a.quick else ''}); do not edit by hand. "
            "Cycle counts come from rnnskip's Cortex-M cycle model on the Unicorn emulator "
            "(tables and their TRM sources in `rnnskip/simulator/cycles.py`), not from hardware.", ""]
    Path(repo_root(), "BENCHMARKS.md").write_text("\n".join(head + parts) + "\n")
    print(f"wrote {Path(repo_root(), 'BENCHMARKS.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
