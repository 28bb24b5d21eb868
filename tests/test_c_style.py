"""The C the generator writes follows the project's C style (.clang-format), for every
template path: token and feature inputs, each cell kind and GRU variant, input Dense and
Dense head activations, per-step outputs, skip predictors (network and trees), delta
networks, every kernel provider. Run by `make lint` before the tests."""
from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from helpers import quantize_on, quantized
from random_models import CONFIGS, random_data, random_ir

from rnnskip.delta.golden import with_delta
from rnnskip.delta.spec import DeltaSpec
from rnnskip.generate import generate

ROOT = Path(__file__).resolve().parent.parent
# the one the lint extra installs next to this interpreter first, so the pinned version decides
CLANG_FORMAT = shutil.which("clang-format", path=str(Path(sys.executable).parent)) or shutil.which("clang-format")
pytestmark = pytest.mark.skipif(CLANG_FORMAT is None, reason="clang-format not installed (make setup installs it)")


def _qm(cfg):
    return quantized(cfg, n=6, T=5)[1]


def _models():
    for cfg in sorted(CONFIGS):
        yield cfg, _qm(cfg), "portable"
    yield "naive", _qm("feat-lstm-gru"), "naive"
    centered = _qm("feat-mask-gru")   # a normalisation on the input: the device subtracts each feature's centre
    centered.feature_offsets = np.linspace(-3.5, 1013.25, centered.features).astype(np.float32)
    yield "centered", centered, "portable"
    yield "cmsis-nn", _qm("tok-gru-v1"), "cmsis-nn"
    qm = _qm("feat-lstm-gru")
    yield "delta", with_delta(qm, DeltaSpec([2, 3], [1, 4])), "portable"
    yield "delta-rnn", with_delta(_qm("feat-mask-rnn-lstm"), DeltaSpec([2, 3], [1, 4])), "portable"
    from test_frontend import front_ir  # the streamed Conv1D front end, flush included
    fir = front_ir("feat-lstm-gru")
    yield "frontend", quantize_on(fir, *random_data(fir, n=6, T=12, seed=1)), "portable"
    for i, conv in ((0, fir.input.front[0]), (2, fir.input.front[2])):   # a normalisation folded into each Conv1D
        fir.input.front[i] = replace(conv, pad=np.linspace(-0.5, 0.5, conv.in_dim))
    yield "frontend-pads", quantize_on(fir, *random_data(fir, n=6, T=12, seed=1)), "portable"
    dw = front_ir("feat-gru-lstm-rnn", depthwise=True)   # DepthwiseConv1D, a kernel-1 Conv1D
    yield "frontend-depthwise", quantize_on(dw, *random_data(dw, n=6, T=12, seed=1)), "portable"
    from random_models import bidi_ir  # Bidirectional: into a later layer; last before the head (and with delta)
    for name, (cfg, index, merge_mode) in {"bidi-concat": ("feat-lstm-gru", 0, "concat"),
                                           "bidi-mul-last": ("feat-mask-rnn-lstm", 1, "mul")}.items():
        bir = bidi_ir(cfg, index, merge_mode)
        yield name, quantize_on(bir, *random_data(bir, n=6, T=7, seed=1)), "portable"
    for name, (cfg, index, merge_mode) in {"bidi-per-step-last": ("feat-mask-gru", 0, "ave"),
                                           "bidi-per-step-later": ("feat-lstm-gru", 0, "concat")}.items():
        pir = bidi_ir(cfg, index, merge_mode, per_step=True)
        yield name, quantize_on(pir, *random_data(pir, n=6, T=7, seed=1)), "portable"
    for name, (cfg, index, merge_mode, per_step) in {   # stacked: a layer between them, later ones; two in a row, last
            "bidi-stacked-between": ("tok-lstm-gru-lstm-gru", (0, 2), "ave", True),
            "bidi-stacked-last": ("feat-lstm-gru", (0, 1), "concat", False)}.items():
        sir = bidi_ir(cfg, index, merge_mode, per_step=per_step)
        yield name, quantize_on(sir, *random_data(sir, n=6, T=7, seed=1)), "portable"
    bq = quantize_on(bir, *random_data(bir, n=6, T=7, seed=1))
    yield "bidi-delta", with_delta(bq, DeltaSpec([2] * 3, [1] * 3)), "portable"
    from test_pooling import _pooled, pool_ir  # pooling over time: the plain step, the front end, Bidirectional
    for name, pir in {"pool-avg-tokens": pool_ir("tok-lstm-softmax", "avg"),
                      "pool-max-mask": pool_ir("feat-mask-gru", "max"),
                      "pool-front": _pooled(front_ir("feat-lstm-gru"), "avg"),
                      "pool-bidi-max-last": _pooled(bidi_ir("feat-mask-gru", 0, "sum"), "max"),
                      "pool-bidi-max-later": _pooled(bidi_ir("feat-lstm-gru", 0, "concat"), "max")}.items():
        yield name, quantize_on(pir, *random_data(pir, n=6, T=12, seed=1)), "portable"
    from test_flatten import flatten_ir  # Flatten over time: every step's output into the head
    flat = flatten_ir("feat-mask-gru", 6)
    yield "flatten", quantize_on(flat, *random_data(flat, n=6, T=6, seed=1)), "portable"
    from test_skip_device import random_predictor

    from rnnskip.skip.qpredictor import quantize_predictor
    for ptype in ("mlp", "forest"):
        q = _qm("feat-lstm-lstm")
        q.methods = [quantize_predictor(random_predictor(ptype, q.in_dim, [l.units for l in q.layers], seed=3), q)]
        yield f"skip-{ptype}", q, "portable"


def _check(files):
    p = subprocess.run([CLANG_FORMAT, f"--style=file:{ROOT / '.clang-format'}", "--dry-run", "--Werror"]
                       + [str(f) for f in files], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[:3000]


def test_generated_sources_follow_the_c_style(tmp_path):
    files = []
    for name, qm, kernels in _models():
        out = tmp_path / name
        generate(qm, out, max_t=7, kernels=kernels)
        files += [f for f in out.iterdir() if f.suffix in (".c", ".h")]
    _check(files)


def test_board_and_runtime_sources_follow_the_c_style(tmp_path):
    """The board image's main, UART driver and bundled data, and the bare-metal startup, for every
    board (each UART kind) and target, and with the weights copied to RAM."""
    from rnnskip import boards, targets
    from rnnskip.boards.firmware import make_bundle, render_board_sources
    from rnnskip.build import render_runtime
    ir = random_ir("feat-mask-gru")
    x, lengths = random_data(ir, n=3, T=5, seed=1)
    qm = quantize_on(ir, x, lengths)
    bundle = make_bundle(qm, x, lengths, 3)
    files = []
    for name in boards.available():
        if boards.load(name).uart is None:      # no board image (Unicorn cycle model only)
            continue
        out = tmp_path / name
        render_board_sources(out, boards.load(name), bundle)
        files += [f for f in out.rglob("*") if f.suffix in (".c", ".h")]
    ir.rnn_layers[-1].return_sequences, ir.per_step = True, True   # an output per step: every row checked
    qm = quantize_on(ir, x, lengths)
    render_board_sources(tmp_path / "per-step", boards.load("stm32f407"), make_bundle(qm, x, lengths, 3))
    files += [tmp_path / "per-step" / "rnnskip_board_main.c", tmp_path / "per-step" / "rnnskip_board_data.c"]
    for name in targets.available():
        files += [f for f in render_runtime(targets.load(name), tmp_path / f"rt-{name}") if f.suffix == ".c"]
    for w in ("sram", "tcm"):   # the start-up copy of --weights sram|tcm
        t = boards.resolve(None, "stm32f746", None, w)[1]
        files += [f for f in render_runtime(t, tmp_path / f"rt-{w}") if f.suffix == ".c"]
    _check(files)


def test_kernels_follow_the_c_style():
    files = sorted((ROOT / "rnnskip" / "kernels").rglob("*.[ch]")) + sorted((ROOT / "rnnskip" / "cells").glob("*.h"))
    assert len(files) > 10
    _check(files)
