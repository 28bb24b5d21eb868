"""The float reference against the source file's own runtime on the user's data (ONNX: onnxruntime;
Keras 2 files: tf_keras; Keras 3 files: keras), at conversion: report.json's ``reference_check``.
The tests check this on generated models; this checks it on the user's model and arrays, as given."""
from __future__ import annotations

from typing import Optional

import numpy as np

#: a float reference further than this from the source runtime gets a warning line (times the largest |output|
#: where that is above 1: a relative tolerance for outputs such as 101,325 Pa)
TOLERANCE = 1e-4


def check(ir, x, lengths, max_rows: int = 64) -> Optional[dict]:
    """Run the first ``max_rows`` rows of ``x`` (batch-major, as --data holds it) through the source
    runtime and the float reference; None when the model's source has no runtime rnnskip can run here.
    Rows that ``lengths`` end early are left out unless the model takes the lengths itself (the runtime
    runs every step of them; the data check warns about those)."""
    io = getattr(ir, "source_io", None) or {}
    if io.get("runtime") != "onnxruntime":
        return _check_keras(ir, x, lengths, max_rows) if getattr(ir, "keras_version", "") else None
    try:
        import onnxruntime as ort
    except ImportError:
        return {"runtime": "onnxruntime", "skipped": "onnxruntime is not installed (pip install 'rnnskip[onnx]')"}
    x = np.asarray(x)
    lengths = np.asarray(lengths).reshape(-1)
    rows = np.arange(len(x)) if io.get("lengths") else np.flatnonzero(lengths == x.shape[1])
    rows = rows[:max_rows]
    if rows.size == 0:
        return {"runtime": "onnxruntime", "skipped": "every row ends before its last step (lengths) and the graph "
                                                      "takes no sequence_lens: nothing to compare as given"}
    static = list(io.get("input_static") or [0, 0])
    batch, steps = (static[1], static[0]) if io.get("input_time_major") else (static[0], static[1])
    if steps and steps != x.shape[1]:
        return {"runtime": "onnxruntime", "skipped": f"the graph takes exactly {steps} steps (its time axis was "
                                                      f"exported static) and the data has {x.shape[1]}"}
    from ..reference import FloatModel
    got = np.asarray(FloatModel(ir).predict(x[rows], lengths[rows]), np.float64)
    # a graph exported with a static batch of 1 may have squeezed the batch axis away (fc(h.squeeze())): its one
    # row's output is then one axis short of a batch
    row_ndim = got.ndim - 1 - (1 if io.get("output_squeezed") else 0)
    try:
        opts = ort.SessionOptions()
        opts.log_severity_level = 4   # its own error lines on stderr: the reason goes into the report instead
        sess = ort.InferenceSession(str(ir.source), sess_options=opts, providers=["CPUExecutionProvider"])
        parts = []
        chunk = batch or len(rows)               # a static batch: runs of exactly that many rows
        for k in range(0, len(rows), chunk):
            part = rows[k:k + chunk]
            fed = np.concatenate([part, np.repeat(part[:1], chunk - len(part))])   # padded with a repeat
            xb = x[fed].astype(io.get("input_dtype", "float32"))
            feeds = {io["input"]: np.swapaxes(xb, 0, 1) if io.get("input_time_major") else xb}
            if io.get("lengths"):
                feeds[io["lengths"]] = lengths[fed].astype(io.get("lengths_dtype") or np.int32)
            out = np.asarray(sess.run(None, feeds)[0], np.float64)
            if io.get("output_unit_axes"):   # the graph's size-1 axes, which rnnskip's output leaves out
                out = np.squeeze(out, axis=tuple(io["output_unit_axes"]))
            out = np.swapaxes(out, 0, 1) if io.get("output_time_major") else out
            if chunk == 1 and out.ndim == row_ndim:
                out = out[None]
            parts.append(out[: len(part)])
        want = np.concatenate(parts)
    except Exception as e:   # e.g. onnxruntime's CPU kernels refuse recurrent operators with layout=1
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return {"runtime": "onnxruntime", "skipped": f"onnxruntime cannot run this graph ({first[:200]})"}
    if io.get("output_squeezed"):
        want = want[..., None]
    if got.shape != want.shape:
        return {"runtime": "onnxruntime", "rows": int(rows.size), "shape_mismatch": [list(got.shape), list(want.shape)]}
    return _compared("onnxruntime", rows, got, want, ir)


def _compared(runtime: str, rows: np.ndarray, got: np.ndarray, want: np.ndarray, ir) -> dict:
    """The comparison of the float reference ``got`` with the runtime's ``want`` on data rows ``rows``. Rows where the
    runtime gives NaN or inf (a GlobalAveragePooling1D over a row whose every step is masked: 0 / 0) are counted
    apart, so they do not hide the others."""
    bad = ~np.isfinite(want).reshape(len(want), -1).all(axis=1)
    ok = ~bad
    diff = float(np.abs(got[ok] - want[ok]).max()) if ok.any() else 0.0
    size = float(np.abs(want[ok]).max()) if ok.any() else 0.0   # float32 rounding grows with the outputs' size
    res = {"runtime": runtime, "rows": int(ok.sum()), "max_abs_diff": diff, "tolerance": TOLERANCE * max(1.0, size)}
    if getattr(ir, "compute_dtype", ""):
        res["compute_dtype"] = ir.compute_dtype
    if bad.any():
        res["nonfinite_rows"] = [int(r) for r in rows[bad]]
        res["nonfinite_why"] = ("a row whose every step is masked, which GlobalAveragePooling1D divides by zero steps "
                                "(rnnskip's mean is 0 there)" if "avg" in getattr(ir, "pool", "").split(",") else
                                "not a case rnnskip knows of; please report it")
    return res


def warning(res: Optional[dict]) -> str:
    """A ``warning:`` line when the float reference is off the source runtime (or could not be compared)."""
    if not res or "skipped" in res:
        return ""
    if "shape_mismatch" in res:
        return (f"warning: the float reference's outputs have shape {res['shape_mismatch'][0]} but "
                f"{res['runtime']}'s {res['shape_mismatch'][1]} on the same rows; please report this")
    if res["max_abs_diff"] > res["tolerance"] and res.get("compute_dtype"):
        return (f"warning: the float reference differs from {res['runtime']} by up to {res['max_abs_diff']:.2g} on "
                f"{res['rows']} rows of the data: the model computes in {res['compute_dtype']} (its dtype policy) and "
                f"the reference in float32, so part or all of that is {res['compute_dtype']} rounding")
    if res["max_abs_diff"] > res["tolerance"]:
        return (f"warning: the float reference differs from {res['runtime']} by up to {res['max_abs_diff']:.2g} on "
                f"{res['rows']} rows of the data (tolerance {res['tolerance']:g}); please report this")
    bad = res.get("nonfinite_rows")
    if bad:
        return (f"warning: {res['runtime']} gives NaN (or inf) on {len(bad)} row{'s' if len(bad) > 1 else ''} of the "
                f"data (e.g. row {bad[0]}), where rnnskip gives numbers: {res['nonfinite_why']}; the other "
                f"{res['rows']} rows agree within {res['tolerance']:g}")
    return ""


def _rows_as_given(ir, x, lengths, max_rows: int) -> np.ndarray:
    """Rows whose steps rnnskip runs are the ones Keras runs: full length, or every step at or after the
    length masked by the model's own mask."""
    from ..datasets import lengths_cut_unmasked
    full = lengths == x.shape[1]
    cut = lengths_cut_unmasked(x, lengths, ir)
    if cut is not None:
        full |= ~cut.any(axis=1)
    return np.flatnonzero(full)[:max_rows]


def _check_keras(ir, x, lengths, max_rows: int) -> dict:
    """The Keras generation that wrote the file loads it (compile=False) and runs the rows."""
    from ..tfquiet import import_keras, quiet_stderr
    gen3 = str(ir.keras_version).startswith("3")
    runtime = "keras" if gen3 else "tf_keras"
    try:
        if gen3:
            with quiet_stderr():
                import keras
            load = keras.saving.load_model
        else:
            load = import_keras()[1].models.load_model
    except ImportError:
        return {"runtime": runtime, "skipped": f"{runtime} is not installed (pip install 'rnnskip[keras]')"}
    x = np.asarray(x)
    lengths = np.asarray(lengths).reshape(-1)
    rows = _rows_as_given(ir, x, lengths, max_rows)
    if rows.size == 0:
        return {"runtime": runtime, "skipped": "every row ends before its last step (lengths) where the model's own "
                                               "mask would run it: nothing to compare as given"}
    try:
        with quiet_stderr():
            model = load(str(ir.source), compile=False)
            want = np.asarray(model(x[rows], training=False), np.float64)
    except Exception as e:   # custom layers, files a newer Keras wrote...: nothing to compare, not an error
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return {"runtime": runtime, "skipped": f"{runtime} cannot load or run {ir.source} ({first[:200]})"}
    from ..reference import FloatModel
    got = np.asarray(FloatModel(ir).predict(x[rows], lengths[rows]), np.float64)
    if got.shape != want.shape and want.shape == got.shape[:-1] and got.shape[-1] == 1:
        want = want[..., None]
    if got.shape != want.shape:
        return {"runtime": runtime, "rows": int(rows.size), "shape_mismatch": [list(got.shape), list(want.shape)]}
    return _compared(runtime, rows, got, want, ir)
