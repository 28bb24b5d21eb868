"""The helpers the generated C gives firmware authors - rnnskip_quantize_features (float
features -> the int8 input), rnnskip_step_valid (Keras Masking) and rnnskip_class (argmax
over the real logits) - bit-exact with the golden model on the host build and on the
emulated Cortex-M4 firmware, ties, clamping and NaN included."""
from __future__ import annotations

import ctypes

import numpy as np
import pytest
from helpers import needs_arm, quantized

from rnnskip import pipeline
from rnnskip.generate import generate
from rnnskip.outputs import _classes
from rnnskip.quant.golden import GoldenModel, feature_inv_scale

HELPERS = ("rnnskip_quantize_features", "rnnskip_step_valid", "rnnskip_class")


def _feature_column(inv, rng):
    """Float32 values of one feature (int8 factor ``inv``) that probe the rounding: random values,
    exact .5 ties of the float32 product (even and odd), the clamp, +-0, NaN."""
    vals = [rng.normal(0, 60, 400).astype(np.float32) / inv]
    ties = []
    for k in range(-130, 130):                         # x with float32(x) * inv == k + 0.5 exactly
        x = np.float32((k + 0.5) / inv)
        for cand in (x, np.nextafter(x, np.float32(np.inf)), np.nextafter(x, np.float32(-np.inf))):
            if np.float32(cand) * inv == np.float32(k + 0.5):
                ties.append(cand)
    assert len(ties) > 20                              # the product does land on ties
    vals += [np.asarray(ties, np.float32),
             np.float32([127 / inv, -127 / inv, 126.5 / inv, 1e30, -1e30, 0.0, -0.0, np.nan, 1e-40])]
    return np.concatenate(vals)


def _feature_rows(qm, mask_value, rng):
    """Rows of probing values, each feature's column on its own factor, then a masked row and one
    that differs from it in the last feature only."""
    off = np.zeros(qm.features, np.float32) if qm.feature_offsets is None else qm.feature_offsets
    cols = [_feature_column(inv, rng) + o for inv, o in zip(feature_inv_scale(qm), off)]   # around each offset
    n = max(len(c) for c in cols)
    v = np.stack([np.concatenate([c, np.zeros(n - len(c), np.float32)]) for c in cols], axis=1)
    masked = np.full((1, qm.features), mask_value, np.float32)
    nearly = masked.copy()
    nearly[0, -1] = np.nextafter(np.float32(mask_value), np.float32(np.inf))
    return np.concatenate([v, masked, nearly])


@pytest.fixture(scope="module", params=["plain", "centered"])
def model(request, tmp_path_factory):
    """``centered``: the device subtracts an offset per feature first (a normalisation on the model's input)."""
    ir, qm, x, L = quantized("feat-mask-gru", seed=4, n=8, T=10)
    assert qm.mask_value is not None and qm.output_dim > 1
    if request.param == "centered":
        qm.feature_offsets = np.linspace(-1013.25, 96.5, qm.features).astype(np.float32)
    d = tmp_path_factory.mktemp("device_api")
    generate(qm, d / "src", max_t=16)
    return qm, d


def _expected(qm, rows, logits):
    g = GoldenModel(qm)
    return (g.quantize_features(rows), g.valid_steps(rows[:, None, :])[:, 0],
            _classes(logits[:, : qm.output_dim], 0))


def _logits(qm, rng):
    n = 64
    lg = rng.integers(-3, 4, (n, 12)).astype(np.int16)  # small range: many ties, argmax takes the first
    lg[:, qm.output_dim:] = 32767                       # padding must never win
    return lg


@pytest.mark.parametrize("cflags", [(), ("-ffinite-math-only",)], ids=["default", "finite-math"])
def test_host_helpers_match_golden(model, cflags):
    """Also under -ffinite-math-only (what -ffast-math, common in DSP firmware, turns on and what folds
    ``v != v`` away): NaN still becomes 0 and is never the mask value (tested on the bits). Not -ffast-math
    itself: on x86 its shared library sets flush-to-zero for the whole test process."""
    qm, d = model
    so = ctypes.CDLL(str(pipeline.build_host(d / "src", d / f"host{len(cflags)}", cflags=cflags)))
    rng = np.random.default_rng(0)
    rows, logits = _feature_rows(qm, qm.mask_value, rng), _logits(qm, rng)
    q_ref, valid_ref, cls_ref = _expected(qm, rows, logits)
    q = np.zeros((len(rows), qm.features_p), np.int8)
    valid = np.zeros(len(rows), np.int32)
    for i, r in enumerate(rows):
        r = np.ascontiguousarray(r)
        so.rnnskip_quantize_features(r.ctypes.data_as(ctypes.c_void_p), q[i].ctypes.data_as(ctypes.c_void_p))
        valid[i] = so.rnnskip_step_valid(r.ctypes.data_as(ctypes.c_void_p))
    np.testing.assert_array_equal(q, q_ref)
    np.testing.assert_array_equal(valid, valid_ref.astype(np.int32))
    assert valid[-2] == 0 and valid[-1] == 1
    cls = [so.rnnskip_class(np.ascontiguousarray(l).ctypes.data_as(ctypes.c_void_p)) for l in logits]
    np.testing.assert_array_equal(cls, cls_ref)


@needs_arm
def test_firmware_helpers_match_golden(model):
    from rnnskip import targets
    from rnnskip.build import keep_flags
    from rnnskip.simulator import UnicornEmulator
    qm, d = model
    t = targets.load("cortex-m4")
    fw = pipeline.build_target(d / "src", d / "fw", t, "dsp", extra_cflags=keep_flags(HELPERS))
    emu = UnicornEmulator(fw.elf, t)
    buf, size = emu.symbol("rnnskip_io_x")                    # scratch: floats in, int8 out
    F, Fp = qm.features, qm.features_p
    assert size >= 4 * F + Fp
    rng = np.random.default_rng(1)
    rows, logits = _feature_rows(qm, qm.mask_value, rng), _logits(qm, rng)
    q_ref, valid_ref, cls_ref = _expected(qm, rows, logits)
    for i, r in enumerate(rows):
        emu.write(buf, np.ascontiguousarray(r, np.float32).tobytes())
        emu.call("rnnskip_quantize_features", [buf, buf + 4 * F])
        got = np.frombuffer(emu.read(buf + 4 * F, Fp), np.int8)
        np.testing.assert_array_equal(got, q_ref[i], err_msg=f"row {i}: {r}")
        assert emu.call("rnnskip_step_valid", [buf]).return_value == int(valid_ref[i])
    for i, l in enumerate(logits):
        emu.write(buf, np.ascontiguousarray(l, np.int16).tobytes())
        assert emu.call("rnnskip_class", [buf]).return_value == cls_ref[i]


def test_header_documents_the_input_and_output(model):
    qm, d = model
    h = (d / "src" / "rnnskip_model.h").read_text()
    inv = feature_inv_scale(qm)
    c = (d / "src" / "rnnskip_model.c").read_text()
    assert "extern const float rnnskip_feature_inv_scale[RNNSKIP_FEATURES];" in h
    body = c.split("const float rnnskip_feature_inv_scale[RNNSKIP_FEATURES] = {", 1)[1].split("};", 1)[0]
    lits = [t.strip() for t in body.split(",")]
    assert all(t.endswith("f") for t in lits)
    assert np.array_equal(np.float32([float(t[:-1]) for t in lits]), inv)   # exactly the golden model's factors
    if qm.feature_offsets is not None:
        body = c.split("const float rnnskip_feature_offset[RNNSKIP_FEATURES] = {", 1)[1].split("};", 1)[0]
        assert np.array_equal(np.float32([float(t.strip()[:-1]) for t in body.split(",")]), qm.feature_offsets)
        assert "extern const float rnnskip_feature_offset[RNNSKIP_FEATURES];" in h
    else:
        assert "rnnskip_feature_offset" not in c
    assert "#define RNNSKIP_MASK_VALUE" in h and "int32_t rnnskip_class(const int16_t *out);" in h


def test_class_helper_for_a_classifier_trained_from_logits(tmp_path):
    """A linear head with several outputs (Keras' from_logits classifier) gets rnnskip_class too (the
    README's example calls it); one linear output (a regression) does not."""
    import copy
    _, qm, _, _ = quantized("feat-mask-gru", seed=4, n=8, T=10)
    assert qm.output_dim > 1
    for dim, has in ((qm.output_dim, True), (1, False)):
        q = copy.deepcopy(qm)
        q.output_activation, q.output_dim = "linear", dim
        generate(q, tmp_path / str(dim), max_t=16)
        h = (tmp_path / str(dim) / "rnnskip_model.h").read_text()
        c = (tmp_path / str(dim) / "rnnskip_model.c").read_text()
        assert ("int32_t rnnskip_class(const int16_t *out);" in h) == has
        assert ("int32_t rnnskip_class(const int16_t *out)\n{" in c) == has


@needs_arm
def test_firmware_is_reproducible_across_build_folders(model, tmp_path, monkeypatch):
    """The same sources built in two differently named folders (rnnskip-convert builds in a temporary one),
    from two working directories, give byte-identical ELFs and link maps: the debug info's paths are relative
    to the build's folder, and the map names each object after its source (not gcc's /tmp/ccXXXXXX.o)."""
    import shutil
    from pathlib import Path

    from rnnskip import targets
    _, d = model
    elves, maps = [], []
    for name in (".m4.partial-abc", ".m4.partial-xyz"):
        shutil.copytree(d / "src", tmp_path / name / "src")
        (tmp_path / name / "cwd").mkdir()
        monkeypatch.chdir(tmp_path / name / "cwd")
        # the second build through relative paths with '..' (as `--out ../m4` gives them)
        base = tmp_path / name if not elves else Path("..")
        fw = pipeline.build_target(base / "src", base / "firmware", targets.load("cortex-m4"))
        elves.append(fw.elf.read_bytes())
        maps.append(fw.map.read_text())
        assert sorted(p.name for p in fw.elf.parent.iterdir()) == ["firmware.elf", "firmware.map", "link.ld",
                                                                   "startup.c"]
    assert elves[0] == elves[1]
    assert maps[0] == maps[1]
    assert "/tmp/cc" not in maps[0] and "\nLOAD rnnskip_model.o\n" in maps[0]
    assert " .text.rnnskip_step\n" in maps[0] and "OUTPUT(firmware.elf elf32-littlearm)" in maps[0]


APP = """#include "rnnskip_model.h"
int32_t run_{p}(void)
{{
    static rnnskip_state_t s;
    int16_t out[RNNSKIP_OUTPUT_LEN];
    rnnskip_init(&s);
    rnnskip_output(&s, out);
    return out[0];
}}
"""


@needs_arm
def test_two_models_with_prefixes_link_into_one_image(tmp_path):
    """--prefix: two different models, each header included from its own source file, one copy of the
    kernels: one image, each model's symbols under its prefix, the kernels' and the harness's unchanged."""
    import subprocess

    from rnnskip import targets
    from rnnskip.build import cflags
    t = targets.load("cortex-m4")
    from helpers import quantize_on
    from random_models import bidi_ir, random_data
    from test_frontend import _method, front_ir

    def front(which):     # a Conv1D front end with a delta network and a skip predictor
        ir = front_ir("feat-lstm-gru")
        x, L = random_data(ir, n=6, T=12, seed=2)
        return _method(quantize_on(ir, x, L), x, L, which)

    def bidi():
        ir = bidi_ir("feat-lstm", merge="sum", seed=1)
        x, L = random_data(ir, n=6, T=8, seed=2)
        return quantize_on(ir, x, L)
    models = {"kws": lambda: quantized("feat-mask-gru", seed=1, n=6, T=8)[1],
              "har": lambda: quantized("tok-lstm-softmax", seed=1, n=6, T=8, units=(8,))[1],
              "vad": lambda: front("delta+skip"), "imu": bidi}
    objs = []
    for p, make in models.items():
        qm = make()
        qm.c_prefix = p
        d = tmp_path / p
        generate(qm, d, max_t=8)
        (d / "app.c").write_text(APP.format(p=p))
        srcs = ["rnnskip_model.c", "rnnskip_weights.c", "app.c"]
        if p == "kws":
            srcs += [f"kernels/{f.name}" for f in sorted((d / "kernels").glob("*.c"))]
        for s in srcs:
            o = tmp_path / f"{p}_{s.replace('/', '_')}.o"
            r = subprocess.run(["arm-none-eabi-gcc", *cflags(t), "-Wall", "-Werror", "-I", str(d), "-I",
                                str(d / "kernels"), "-c", str(d / s), "-o", str(o)], capture_output=True, text=True)
            assert r.returncode == 0, r.stderr
            objs.append(str(o))
    (tmp_path / "main.c").write_text("#include <stdint.h>\n" + "".join(f"int32_t run_{p}(void);\n" for p in models)
                                     + "int main(void) { return (int)(" + " + ".join(f"run_{p}()" for p in models)
                                     + "); }\n")
    elf = tmp_path / "both.elf"
    r = subprocess.run(["arm-none-eabi-gcc", *t.cflags, "--specs=nosys.specs", str(tmp_path / "main.c"), *objs,
                        "-o", str(elf)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr                 # no symbol defined twice
    syms = subprocess.run(["arm-none-eabi-nm", str(elf)], capture_output=True, text=True).stdout
    names = {line.split()[-1] for line in syms.splitlines() if line.strip()}
    assert {f"{p}_{f}" for p in models for f in ("init", "step", "output")} <= names
    assert {"kws_l0_mi", "rnnskip_mat_vec_paired_s8", "rnnskip_delta_mat_vec_s8", "rnnskip_conv1d_acc_s8"} <= names
    assert not [n for n in names if n.startswith("rnnskip_") and n[8:] in {"init", "step", "output", "finish"}]
    # two models' headers in one source file: refused at compile time (their RNNSKIP_* macros would
    # silently be the first model's); one model's header twice is fine
    for src, ok in (('#include "kws/rnnskip_model.h"\n#include "vad/rnnskip_model.h"\n', False),
                    ('#include "kws/rnnskip_model.h"\n#include "kws/rnnskip_model.h"\n', True)):
        (tmp_path / "two.c").write_text(src + "int two(void) { return RNNSKIP_OUTPUT_DIM; }\n")
        r = subprocess.run(["arm-none-eabi-gcc", *cflags(t), "-I", str(tmp_path), "-I", str(tmp_path / "kws"), "-I",
                            str(tmp_path / "kws" / "kernels"), "-c", str(tmp_path / "two.c"), "-o",
                            str(tmp_path / "two.o")], capture_output=True, text=True)
        assert (r.returncode == 0) == ok, r.stderr
        assert ok or "rnnskip: two models' rnnskip_model.h in one source file; include each model's header from " \
                      "its own .c file" in r.stderr


def test_prefix_names_refused_in_one_line():
    from rnnskip.errors import RnnskipError
    from rnnskip.generate import check_prefix
    assert check_prefix("kws") == "kws" and check_prefix("rnnskip") == "rnnskip"
    for bad in ("", "KWS", "9x", "kws_", "rnnskip_kws", "a-b", "x" * 30, "arm", "arm_nn"):
        with pytest.raises(RnnskipError, match="give a short lowercase C name"):
            check_prefix(bad)


@needs_arm
def test_prefixed_model_is_bitexact_and_profiled(tmp_path):
    """A model generated with a prefix runs through the same harness: host build and firmware equal the golden
    model, and the per-part profile finds its step code under the prefixed name."""
    from helpers import dataset

    from rnnskip import targets
    from rnnskip.emulators.unicorn import Unicorn
    from rnnskip.pipeline.stages import device_sequences, kernel_parts, parts_per_step
    _, qm, x, L = quantized("feat-mask-gru", seed=2, n=6, T=8)
    ir = quantized("feat-mask-gru", seed=2, n=6, T=8)[0]
    qm.c_prefix = "kws"
    generate(qm, tmp_path / "src", max_t=8)
    t = targets.load("cortex-m4")
    fw = pipeline.build_target(tmp_path / "src", tmp_path / "fw", t, "dsp")
    so = pipeline.build_host(tmp_path / "src", tmp_path / "host")
    emu = Unicorn(t, traffic_sample=0, workers=1, progress=False)
    ev = pipeline.evaluate(ir, qm, dataset(x, L), host_so=so, firmware=fw, emulator=emu)
    assert ev.mismatches == 0 and ev.device_checked == len(x) and ev.host_checked == len(x)
    prof = emu.profile(fw, device_sequences(qm, dataset(x, L), 2))
    assert any(f.startswith("kws_step") for f in prof) and not any(f.startswith("rnnskip_step") for f in prof)
    assert prof.get("kws_step_l0_cells", 0) > 0         # the layer's cell function, under the prefix
    row = parts_per_step(prof, kernel_parts("portable", (), qm.c_prefix), 10, qm.c_prefix)
    assert row["step code (with the cells)"] > 0


@needs_arm
def test_files_of_two_conversions_do_not_compile_together(tmp_path):
    """rnnskip_weights.h carries a fingerprint of the arrays; rnnskip_model.c and rnnskip_weights.c check
    it, so a model file next to another conversion's weights (same shapes, other values) stops the build
    instead of running with the wrong weights."""
    import shutil
    import subprocess

    from rnnskip import targets
    from rnnskip.build import cflags
    t = targets.load("cortex-m4")
    for seed in (1, 2):      # the same architecture, other weights
        generate(quantized("feat-mask-gru", seed=seed, n=6, T=8)[1], tmp_path / f"m{seed}", max_t=8)
    a, b = tmp_path / "m1", tmp_path / "m2"
    assert (a / "rnnskip_weights.h").read_text() != (b / "rnnskip_weights.h").read_text()

    def cc(d, src):
        return subprocess.run(["arm-none-eabi-gcc", *cflags(t), "-I", str(d), "-I", str(d / "kernels"), "-c",
                               str(d / src), "-o", str(tmp_path / "x.o")], capture_output=True, text=True)
    for src in ("rnnskip_model.c", "rnnskip_weights.c"):
        assert cc(a, src).returncode == 0
    shutil.copy(b / "rnnskip_weights.h", a / "rnnskip_weights.h")
    for src in ("rnnskip_model.c", "rnnskip_weights.c"):
        r = cc(a, src)
        assert r.returncode != 0 and "rnnskip: rnnskip_weights.h is from another conversion; copy all of one " \
                                     "conversion's files together" in r.stderr, r.stderr


def test_kernels_of_another_version_do_not_compile_with_a_model(tmp_path):
    """kernels/rnnskip_kernels_id.h names the kernel set (a hash of its files); every rnnskip_model.c checks it.
    Two models of one rnnskip version share it (one kernels/ copy serves both, as the README says); a
    kernels/ folder whose files differ (another version, another provider) stops the build in one line."""
    import shutil
    import subprocess

    from rnnskip import targets
    from rnnskip.build import cflags
    from rnnskip.generate import kernel_files, kernels_id
    t = targets.load("cortex-m4")
    generate(quantized("feat-mask-gru", seed=1, n=6, T=8)[1], tmp_path / "a", max_t=8)
    generate(quantized("tok-lstm-softmax", seed=2, n=6, T=8)[1], tmp_path / "b", max_t=8)
    ida = (tmp_path / "a" / "kernels" / "rnnskip_kernels_id.h").read_text()
    assert ida == (tmp_path / "b" / "kernels" / "rnnskip_kernels_id.h").read_text()
    assert kernels_id(kernel_files("portable")) in ida and kernels_id(kernel_files("portable")) != \
        kernels_id(kernel_files("cmsis-nn"))
    other = tmp_path / "other"                  # one kernel file changed, as in another rnnskip version
    other.mkdir()
    files = []
    for f in kernel_files("portable"):
        shutil.copy(f, other / f.name)
        files.append(other / f.name)
    (other / "rnnskip_delta_s8.c").write_text((other / "rnnskip_delta_s8.c").read_text() + "\n/* changed */\n")
    new_id = kernels_id(files)
    assert new_id != kernels_id(kernel_files("portable"))
    a = tmp_path / "a"

    def cc():
        return subprocess.run(["arm-none-eabi-gcc", *cflags(t), "-I", str(a), "-I", str(a / "kernels"), "-c",
                               str(a / "rnnskip_model.c"), "-o", str(tmp_path / "x.o")], capture_output=True, text=True)
    assert cc().returncode == 0
    (a / "kernels" / "rnnskip_kernels_id.h").write_text(ida.replace(kernels_id(kernel_files("portable")), new_id))
    r = cc()
    assert r.returncode != 0 and "rnnskip: kernels/ holds another kernel set (rnnskip version or provider); use " \
                                 "this conversion's kernels/" in r.stderr, r.stderr


def test_token_id_outside_the_vocabulary_is_refused_by_the_step(tmp_path):
    """A token id outside 0..RNNSKIP_VOCAB-1 (corrupt input on the device; rnnskip's own data checks
    refuse it) makes rnnskip_step return RNNSKIP_STEP_BAD_INPUT and leaves the state as it was: the
    outputs after good ids with bad ones in between equal the golden model's on the good ids alone.
    Before, the id was silently replaced by id 1 and the step reported that it ran."""
    ir, qm, x, L = quantized("tok-gru-sigmoid", seed=3, n=4, T=8)
    generate(qm, tmp_path / "src", max_t=16)
    h = (tmp_path / "src" / "rnnskip_model.h").read_text()
    assert "#define RNNSKIP_STEP_BAD_INPUT (-1)" in h and f"#define RNNSKIP_VOCAB {qm.embedding.shape[0]}" in h
    lib = ctypes.CDLL(str(pipeline.build_host(tmp_path / "src", tmp_path / "host")))
    lib.rnnskip_step.restype = ctypes.c_int32
    state = ctypes.create_string_buffer(1 << 16)
    out = (ctypes.c_int16 * 16)()
    vocab = qm.embedding.shape[0]
    good = [int(v) for v in x[0, : L[0]] if v != 0]
    lib.rnnskip_init(state)
    rets = []
    for v in good:
        for bad in (vocab, -3, 1 << 20):
            rets.append(lib.rnnskip_step(state, ctypes.byref(ctypes.c_int32(bad)), 1))
        assert lib.rnnskip_step(state, ctypes.byref(ctypes.c_int32(v)), 1) == 1
    assert rets == [-1] * (3 * len(good))
    lib.rnnskip_output(state, out)
    ref, _ = GoldenModel(qm).run(np.asarray([good], np.int32), np.asarray([len(good)]))
    assert np.array_equal(np.array(out[: qm.output_dim], np.int64), ref[0, : qm.output_dim])


def test_every_model_has_rnnskip_finish_and_a_full_window_says_so(tmp_path):
    """rnnskip_finish() is in every model's API (a no-op where nothing is pending), so application code is the
    same for every model; a Bidirectional model's step past its window returns RNNSKIP_STEP_WINDOW_FULL, not the
    0 of a masked step (an audit of the generated C found both)."""
    from helpers import quantize_on
    from random_models import bidi_ir
    ir, qm, x, L = quantized("tok-gru-sigmoid", seed=3, n=4, T=8)
    generate(qm, tmp_path / "plain", max_t=8)
    h = (tmp_path / "plain" / "rnnskip_model.h").read_text()
    assert "void rnnskip_finish(rnnskip_state_t *s);" in h and "WINDOW_FULL" not in h
    lib = ctypes.CDLL(str(pipeline.build_host(tmp_path / "plain", tmp_path / "hplain")))
    state = ctypes.create_string_buffer(1 << 16)
    lib.rnnskip_init(state)
    lib.rnnskip_finish(state)   # links and returns
    bir = bidi_ir("feat-lstm-gru", 0, "concat", seed=2)
    xb = np.random.default_rng(0).normal(size=(2, 6, bir.input.features)).astype(np.float32)
    bqm = quantize_on(bir, xb, np.full(2, 6))
    generate(bqm, tmp_path / "bidi", max_t=4)
    assert "#define RNNSKIP_STEP_WINDOW_FULL (-2)" in (tmp_path / "bidi" / "rnnskip_model.h").read_text()
    lib = ctypes.CDLL(str(pipeline.build_host(tmp_path / "bidi", tmp_path / "hbidi")))
    lib.rnnskip_step.restype = ctypes.c_int32
    q = np.zeros(64, np.int8)
    lib.rnnskip_init(state)
    rets = [lib.rnnskip_step(state, q.ctypes.data_as(ctypes.c_void_p), 1) for _ in range(6)]
    assert rets == [1, 1, 1, 1, -2, -2]
    assert lib.rnnskip_step(state, q.ctypes.data_as(ctypes.c_void_p), 0) == 0   # masked: 0, as before
