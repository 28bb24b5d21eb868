"""make bench: run the benchmarks and regenerate BENCHMARKS.md (never edit it by hand).

Each section's markdown and README summary lines are kept in bench_out/sections/, so
``--only NAME`` reruns one section and BENCHMARKS.md is reassembled from all of them. A section
with no saved results there (a fresh clone: bench_out/ is not in git) keeps its current text,
found between the ``<!-- section: NAME -->`` lines of BENCHMARKS.md and README.md.
"""
from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

from rnnskip.errors import RnnskipError

from . import (
    boards_bench,
    certify_bench,
    delta_bench,
    delta_lstm_bench,
    frontend_bench,
    pipeline_bench,
    pooling_bench,
    skip_bench,
    targets_bench,
)
from .common import bench_out, repo_root, versions

#: the line before each section in BENCHMARKS.md and before its lines in README.md's bench block
MARK = "<!-- section: {} -->"
MARK_RE = re.compile(r"<!-- section: ([a-z0-9-]+) -->")
#: a section's last line: ``_<date time>, <machine>, <seconds> s[, --quick][; provenance]_``
FOOTER = re.compile(r"^_\d{4}-\d{2}-\d{2} \d{2}:\d{2}, [^,]+, \d+ s.*_$")
README_START, README_END = "<!-- bench:start -->", "<!-- bench:end -->"

SECTIONS = [("pipeline", pipeline_bench), ("targets", targets_bench), ("boards", boards_bench),
            ("skip", skip_bench), ("certify", certify_bench), ("delta", delta_bench),
            ("delta-lstm", delta_lstm_bench), ("frontends", frontend_bench), ("pooling", pooling_bench)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer emulated sequences (smoke run; still writes the file)")
    ap.add_argument("--only", default=None, help="comma-separated sections: " + ",".join(n for n, _ in SECTIONS))
    ap.add_argument("--rerender", action="store_true",
                    help="measure nothing: rewrite each section's text from its saved results "
                         "(bench_out/sections/NAME.json) with the current markdown code")
    a = ap.parse_args(argv)
    sec_dir = Path(bench_out("sections"))
    if a.rerender:
        for name, mod in SECTIONS:
            js, md = sec_dir / f"{name}.json", sec_dir / f"{name}.md"
            if not js.is_file() or (a.only and name not in a.only.split(",")):
                continue
            res = json.loads(js.read_text())
            info = md.read_text().rstrip().splitlines()[-1] if md.is_file() else ""
            md.write_text(mod.markdown(res) + "\n\n" + info + "\n")
            lines = mod.summary(res) if hasattr(mod, "summary") else []
            (sec_dir / f"{name}.summary.json").write_text(json.dumps(lines))
            print(f"re-rendered {name} from {js}")
    try:
        for name, mod in SECTIONS:
            if a.rerender or (a.only and name not in a.only.split(",")):
                continue
            print(f"== benchmark: {name}", flush=True)
            t0 = time.time()
            res = mod.run(quick=a.quick)
            (sec_dir / f"{name}.json").write_text(json.dumps(res, indent=1, default=float))
            info = (f"_{time.strftime('%Y-%m-%d %H:%M')}, {platform.machine()}, {time.time() - t0:.0f} s"
                    f"{', --quick' if a.quick else ''}; {provenance()}_")
            (sec_dir / f"{name}.md").write_text(mod.markdown(res) + "\n\n" + info + "\n")
            lines = mod.summary(res) if hasattr(mod, "summary") else []
            (sec_dir / f"{name}.summary.json").write_text(json.dumps(lines))
    except RnnskipError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    old_md, old_sm = recover_sections()
    parts, summary = [], []
    for name, _ in SECTIONS:
        md, sm = sec_dir / f"{name}.md", sec_dir / f"{name}.summary.json"
        text = md.read_text() if md.is_file() else old_md.get(name)
        lines = json.loads(sm.read_text()) if sm.is_file() else old_sm.get(name, [])
        if not md.is_file():
            print(f"{name}: no saved results in {sec_dir}; " +
                  ("kept its text from BENCHMARKS.md and README.md" if text else "left out (none in BENCHMARKS.md)"))
        if text:
            parts.append(f"{MARK.format(name)}\n{text.rstrip()}\n")
        if lines:
            summary += [MARK.format(name)] + lines
    head = ["# rnnskip benchmarks", "",
            "Written by `make bench` (`python -m benchmarks.run_all`); do not edit by hand. Cycle counts come "
            "from rnnskip's Cortex-M cycle model on the Unicorn emulator (tables and their TRM sources in "
            "`rnnskip/simulator/cycles.py`), not from hardware.", ""]
    Path(repo_root(), "BENCHMARKS.md").write_text("\n".join(head) + "\n" + "\n".join(parts))
    print(f"wrote {Path(repo_root(), 'BENCHMARKS.md')}")
    update_readme(summary)
    return 0


def recover_sections() -> tuple:
    """The sections' text in the current BENCHMARKS.md and their lines in README.md's bench block, by
    section name: what a section not measured in this checkout keeps (a fresh clone has no bench_out/, and
    ``--only`` must not drop the others). Split at the ``MARK`` lines; a BENCHMARKS.md written before them
    is split after each section's footer line, in ``SECTIONS`` order, when it has one per section."""
    md = Path(repo_root(), "BENCHMARKS.md")
    text = md.read_text() if md.is_file() else ""
    names = [n for n, _ in SECTIONS]
    parts = {k: "\n".join(v).strip("\n") + "\n" for k, v in _split_marked(text).items()}
    if not parts and text:
        chunks, cur = [], []
        for line in text.split("\n")[_first_heading(text):]:
            cur.append(line)
            if FOOTER.match(line):
                chunks.append("\n".join(cur).strip("\n") + "\n")
                cur = []
        parts = dict(zip(names, chunks)) if len(chunks) == len(names) else {}
        if not parts:
            print(f"BENCHMARKS.md has no section lines and {len(chunks)} section footers for {len(names)} "
                  f"sections: which text is whose is unknown, so none of it is kept")
    readme = Path(repo_root(), "README.md")
    block = readme.read_text().split(README_START, 1)[-1].split(README_END, 1)[0] if readme.is_file() else ""
    lines = {k: [l for l in v if "Full tables" not in l] for k, v in _split_marked(block.strip("\n")).items()}
    return parts, lines


def _split_marked(text: str) -> dict:
    out, name = {}, None
    for line in text.split("\n"):
        m = MARK_RE.fullmatch(line.strip())
        if m:
            name = m.group(1)
            out[name] = []
        elif name is not None:
            out[name].append(line)
    return out


def _first_heading(text: str) -> int:
    lines = text.split("\n")
    return next((i for i, l in enumerate(lines) if l.startswith("## ")), len(lines))


def provenance() -> str:
    """Code commit and the versions that decide the numbers (training and the toolchain), for a
    section's footer: a rerun that differs can then be told apart from a changed environment."""
    try:
        rev = subprocess.run(["git", "-C", repo_root(), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", repo_root(), "status", "--porcelain", "--untracked-files=no", "--",
                                ".", ":!BENCHMARKS.md", ":!README.md"],   # what make bench itself rewrites
                               capture_output=True, text=True, check=True).stdout.strip()
        rev = f"commit {rev}{' + uncommitted changes' if dirty else ''}"
    except (OSError, subprocess.CalledProcessError):
        rev = "commit unknown"
    return ", ".join([rev] + [f"{k if k != 'python' else 'Python'} {v}" for k, v in versions().items()])


def update_readme(lines) -> None:
    """Replace the block between the bench markers in README.md with ``lines``."""
    p = Path(repo_root(), "README.md")
    text = p.read_text()
    start, end = README_START, README_END
    if not lines or start not in text or end not in text:
        return
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    lines = [l for l in lines if "Full tables" not in l] + ["- Full tables: [BENCHMARKS.md](BENCHMARKS.md)."]
    p.write_text(head + start + "\n" + "\n".join(lines) + "\n" + end + tail)
    print(f"updated the benchmark summary in {p}")


if __name__ == "__main__":
    sys.exit(main())
