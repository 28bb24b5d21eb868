"""Peer baseline: TFLite's own full-integer (int8) conversion of the same Keras model.

What the stock toolchain gives a user for the same ``.h5``: load it with
tf_keras, rebuild it for batch 1 with the same weights, convert with
``TFLiteConverter`` (``Optimize.DEFAULT`` + a representative data set +
``TFLITE_BUILTINS_INT8`` only, int8 output), and run the flatbuffer with the
``ai-edge-litert`` interpreter over the test set.

Two conversions, three ways of feeding them (TF 2.21 / tf_keras 2.21):

``unrolled-masked`` (the headline number)
    fixed ``[1, T]`` input, every RNN layer ``unroll=True``, ``mask_zero`` /
    ``Masking`` kept.  Masking becomes ``NOT_EQUAL`` + ``SELECT_V2`` per step,
    so padded steps carry the state exactly as in Keras: same semantics as the
    float model on the same post-padded ``[N, T]`` input, on a fixed-shape
    interpreter (as on a microcontroller).  The flatbuffer is large because
    the graph is unrolled (one set of ops and quantization parameters per
    step; the weights are stored once).
``fused-trimmed``
    ``[1, None]`` input, ``unroll=False`` and masking removed, which lets the
    converter emit TFLite's fused ``UNIDIRECTIONAL_SEQUENCE_LSTM`` (int8
    weights, the kernel TFLite Micro runs).  That op cannot mask, so each test
    sequence is fed trimmed to its true length (``resize_tensor_input`` to
    ``[1, length]``; sequences are grouped by length so the interpreter is
    re-allocated once per distinct length).  Equivalent to masking with
    post-padding; only the LSTM kernel's int8 arithmetic differs.  Needs a
    resizable interpreter, so it is a best case rather than what a fixed-shape
    microcontroller deployment gets.
``fused-prepadded``
    the same fused flatbuffer at fixed ``T`` with the sequence moved to the end
    (left padding with id 0, processed as real steps since nothing masks them):
    what a fixed-shape deployment of the fused op gets.  Differs from Keras
    because the padding embedding runs through the LSTM before the text.

The fused op keeps its state in variable tensors that persist across
``invoke()``, so the interpreter's variables are reset before every sequence
(without that, accuracy silently drops by several points).  GRU has no fused
TFLite op, so the fused paths are LSTM-only.  Not viable: a non-unrolled RNN
*with* masking (the converter dies with a segmentation fault in TF 2.21).
Every conversion runs in a subprocess so a converter crash is recorded in
``notes`` instead of killing the benchmark.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from rnnskip.datasets import Dataset, load_npz, save_npz

VARIANTS = ("unrolled-masked", "fused-trimmed", "fused-prepadded")
#: variant -> (conversion, how test sequences are fed)
_PLAN = {"unrolled-masked": ("unrolled-masked", "padded"),
         "fused-trimmed": ("fused", "trimmed"),
         "fused-prepadded": ("fused", "prepadded")}
_RNN_CLASSES = ("LSTM", "GRU", "SimpleRNN")


# --------------------------------------------------------------------------
# model rebuilding and conversion (runs in a child process)
# --------------------------------------------------------------------------

def _edit_layer_configs(cfg, fn):
    """Apply ``fn(class_name, layer_config)`` to every layer config, recursing
    into wrappers (Bidirectional, TimeDistributed) and nested models."""
    if isinstance(cfg, dict):
        if "class_name" in cfg and isinstance(cfg.get("config"), dict):
            fn(cfg["class_name"], cfg["config"])
        for v in cfg.values():
            _edit_layer_configs(v, fn)
    elif isinstance(cfg, list):
        for v in cfg:
            _edit_layer_configs(v, fn)


def rebuild(model, variant: str, T):
    """A copy of ``model`` with batch 1, time ``T`` (None = dynamic) and the
    variant's RNN / masking settings, carrying the same weights."""

    cfg = model.get_config()
    unroll = variant == "unrolled-masked"
    keep_mask = variant == "unrolled-masked"
    found = {"masking": False}

    def fn(cls, c):
        if "batch_input_shape" in c and c["batch_input_shape"] is not None:
            c["batch_input_shape"] = [1, T] + list(c["batch_input_shape"][2:])
        if cls == "Embedding":
            c["input_length"] = T
            if not keep_mask:
                c["mask_zero"] = False
        if cls in _RNN_CLASSES:
            c["unroll"] = unroll
            c["stateful"] = False
        if cls == "Masking":
            found["masking"] = True

    _edit_layer_configs(cfg, fn)
    if found["masking"] and not keep_mask:
        # Masking has no weights: in a Sequential it can simply be dropped
        layers = cfg.get("layers") if isinstance(cfg, dict) else None
        if model.__class__.__name__ != "Sequential" or not isinstance(layers, list):
            raise ValueError("a Masking layer can only be removed from a Sequential model; "
                             "the fused path needs no masking")
        cfg["layers"] = [l for l in layers if l.get("class_name") != "Masking"]
        if cfg["layers"] and cfg["layers"][0].get("class_name") != "InputLayer":
            first = cfg["layers"][0]["config"]
            first["batch_input_shape"] = [1, T] + [model.input_shape[-1]]
    custom = {}
    new = model.__class__.from_config(cfg, custom_objects=custom)
    new.set_weights(model.get_weights())
    return new


def _convert(model_h5: str, calib_npz: str, variant: str, out_path: str, n_calib: int) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    import tf_keras as tfk

    model = tfk.models.load_model(model_h5, compile=False)
    calib = load_npz(calib_npz)
    T_fixed = int(calib.x.shape[1])
    T = T_fixed if variant == "unrolled-masked" else None
    m = rebuild(model, variant, T)
    is_float = not calib.is_tokens
    rows = calib.sample(n_calib, seed=0)

    def representative():
        for i in range(len(rows)):
            x = rows.x[i:i + 1] if T is not None else rows.x[i:i + 1, :rows.lengths[i]]
            yield [x.astype(np.float32 if is_float else np.int32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(m)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if is_float:
        conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    t0 = time.perf_counter()
    flat = conv.convert()
    with open(out_path, "wb") as f:
        f.write(flat)
    return {"convert_seconds": round(time.perf_counter() - t0, 1), "T": T}


def _run_child(model_h5, calib_npz, variant, out_path, n_calib, timeout=900) -> tuple:
    """Convert in a subprocess; returns ``(info dict or None, error text)``."""
    cmd = [sys.executable, "-m", "benchmarks.tflite_peer", "--convert-child", model_h5, calib_npz,
           variant, out_path, str(n_calib)]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    try:
        p = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"conversion timed out after {timeout} s"
    if p.returncode != 0:
        if p.returncode < 0 or p.returncode == 139:
            return None, f"the TFLite converter crashed (signal {-p.returncode if p.returncode < 0 else 11})"
        tail = [l for l in p.stderr.strip().splitlines() if l.strip()][-1:] or ["(no output)"]
        return None, f"conversion failed: {tail[0][:300]}"
    for line in reversed(p.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line), ""
    return None, "conversion produced no result"


# --------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------

def _decide(prob: np.ndarray) -> int:
    prob = np.asarray(prob, dtype=np.float32).reshape(-1)
    if prob.size == 1:
        return int(prob[0] > 0.5)
    return int(np.argmax(prob))


def _run_tflite(path: str, test: Dataset, feed: str) -> dict:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=path, num_threads=1)
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    out = it.get_output_details()[0]
    in_scale, in_zero = inp["quantization"]
    o_scale, o_zero = out["quantization"]
    ops = sorted({d["op_name"] for d in it._get_ops_details()}) if hasattr(it, "_get_ops_details") else []

    def prep(x):
        if inp["dtype"] == np.int8:  # float model input, quantized
            return np.clip(np.round(x / in_scale + in_zero), -128, 127).astype(np.int8)
        return x.astype(inp["dtype"])

    preds = np.zeros(len(test), dtype=np.int64)
    trimmed = feed == "trimmed"
    order = np.argsort(test.lengths, kind="stable") if trimmed else np.arange(len(test))
    cur = None
    T = int(test.x.shape[1])
    if not trimmed and list(inp["shape"][:2]) != [1, T]:
        it.resize_tensor_input(inp["index"], [1, T] + list(test.x.shape[2:]))
        it.allocate_tensors()
    t0 = time.perf_counter()
    for i in order:
        if trimmed:
            L = int(test.lengths[i])
            if L != cur:
                shape = [1, L] + list(test.x.shape[2:])
                it.resize_tensor_input(inp["index"], shape)
                it.allocate_tensors()
                cur = L
            x = test.x[i:i + 1, :L]
        elif feed == "prepadded":
            L = int(test.lengths[i])
            x = np.zeros_like(test.x[i:i + 1])
            x[:, T - L:] = test.x[i:i + 1, :L]
        else:
            x = test.x[i:i + 1]
        # the fused LSTM keeps its h/c state in variable tensors that persist
        # across invoke() calls: reset them so every sequence starts from zeros
        it.reset_all_variables()
        it.set_tensor(inp["index"], prep(x))
        it.invoke()
        q = it.get_tensor(out["index"]).astype(np.float32)
        prob = (q - o_zero) * o_scale if o_scale else q
        preds[i] = _decide(prob)
    secs = time.perf_counter() - t0
    return {"accuracy": float(np.mean(preds == test.y)), "n": int(len(test)),
            "model_bytes": int(os.path.getsize(path)), "ops": ops,
            "host_seconds": round(secs, 2)}


def keras_float_accuracy(model_h5: str, test: Dataset) -> float:
    """Accuracy of the float Keras model on the same padded input (for reference)."""
    import tf_keras as tfk
    model = tfk.models.load_model(model_h5, compile=False)
    prob = model.predict(test.x, batch_size=256, verbose=0)
    if prob.shape[-1] == 1:
        pred = (prob[:, 0] > 0.5).astype(np.int64)
    else:
        pred = np.argmax(prob, axis=-1)
    return float(np.mean(pred == test.y))


_NOTES = {
    "unrolled-masked": ("full-int8 TFLite (TFLiteConverter, Optimize.DEFAULT, representative data, "
                        "TFLITE_BUILTINS_INT8, int8 output); model rebuilt for batch 1 and fixed T={T} with "
                        "the RNN unrolled and mask_zero kept (NOT_EQUAL+SELECT_V2 per step), so padding is "
                        "masked exactly as in Keras; post-padded input as given; flatbuffer size includes "
                        "the unrolled graph ({T} copies of the step ops; weights stored once)"),
    "fused-prepadded": ("the fused-LSTM flatbuffer at fixed T={T} with left padding (sequence at the end, "
                        "padding steps processed unmasked, as a fixed-shape deployment of the fused op would); "
                        "state variables reset before each sequence"),
    "fused-trimmed": ("full-int8 TFLite with the fused UNIDIRECTIONAL_SEQUENCE_LSTM op; the converter only "
                      "emits it without masking, so mask_zero was turned off and each test sequence was "
                      "fed trimmed to its true length (resize_tensor_input to [1, length]); equivalent to "
                      "masked post-padding; state variables reset before each sequence"),
}


def tflite_int8_accuracy(model_h5: str, calib: Dataset, test: Dataset,
                         variants=VARIANTS, n_calib: int = 500, workdir: str | None = None) -> dict:
    """TFLite full-integer int8 accuracy of ``model_h5`` on ``test``.

    Tries ``variants`` in order (see the module doc); the first that converts
    gives the headline ``accuracy`` / ``model_bytes``.  Returns
    ``{"accuracy", "n", "model_bytes", "notes", "variant", "variants": {name:
    result or {"error": ...}}, "float_accuracy"}``; ``accuracy`` is None when no
    variant converted (``notes`` says why).  ``calib`` feeds the
    representative data set (``n_calib`` random rows)."""
    own_tmp = workdir is None
    workdir = workdir or tempfile.mkdtemp(prefix="rnnskip_tflite_")
    os.makedirs(workdir, exist_ok=True)
    calib_npz = os.path.join(workdir, "calib.npz")
    save_npz(calib_npz, Dataset(calib.x, calib.y, calib.lengths))
    model_h5 = os.path.abspath(model_h5)
    T = int(test.x.shape[1])

    results, headline, converted = {}, None, {}
    for v in variants:
        conversion, feed = _PLAN[v]
        out_path = os.path.join(workdir, f"model_{conversion}.tflite")
        if conversion not in converted:
            converted[conversion] = _run_child(model_h5, calib_npz, conversion, out_path, n_calib)
        info, err = converted[conversion]
        if info is None:
            results[v] = {"error": err}
            continue
        r = _run_tflite(out_path, test, feed)
        r.update(info, path=out_path, conversion=conversion, feed=feed, notes=_NOTES[v].format(T=T))
        results[v] = r
        if headline is None:
            headline = v

    res = {"variants": results, "variant": headline, "n": int(len(test))}
    failed = "; ".join(f"{k}: {r['error']}" for k, r in results.items() if "error" in r)
    if headline is None:
        res.update(accuracy=None, model_bytes=None, notes=f"no TFLite int8 conversion worked ({failed})")
    else:
        h = results[headline]
        others = "; ".join(f"{k}: accuracy {r['accuracy']:.4f}, {r['model_bytes']} bytes"
                           for k, r in results.items() if k != headline and "error" not in r)
        notes = h["notes"]
        if others:
            notes += f". Also measured -- {others}"
        if failed:
            notes += f". Failed -- {failed}"
        res.update(accuracy=h["accuracy"], model_bytes=h["model_bytes"], notes=notes)
    res["float_accuracy"] = keras_float_accuracy(model_h5, test)
    if own_tmp:
        res["workdir"] = workdir
    return res


# --------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------

def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--convert-child":
        model_h5, calib_npz, variant, out_path, n_calib = argv[1:6]
        info = _convert(model_h5, calib_npz, variant, out_path, int(n_calib))
        print(json.dumps(info), flush=True)
        return 0
    ap = argparse.ArgumentParser(description="TFLite int8 peer accuracy of the SST-2 benchmark model")
    ap.add_argument("--model-dir", default=None,
                    help="folder from benchmarks.sst2_model (default bench_out/sst2; trained if missing)")
    ap.add_argument("--json", default=None, help="write the result here")
    a = ap.parse_args(argv)
    from .common import bench_out, shared_data, write_json
    from .sst2_model import load_benchmark, train_sst2
    d = a.model_dir or bench_out("sst2")
    if not os.path.exists(os.path.join(d, "meta.json")):
        train_sst2(shared_data(), d)
    paths, calib, dev, meta = load_benchmark(d)
    res = tflite_int8_accuracy(paths["model"], calib, dev, workdir=os.path.join(d, "tflite"))
    res["keras_dev_accuracy_meta"] = meta["dev_accuracy"]
    print(json.dumps({k: v for k, v in res.items() if k != "variants"}, indent=2))
    for k, r in res["variants"].items():
        print(f"  {k}: " + (r["error"] if "error" in r else
                            f"accuracy {r['accuracy']:.4f} on {r['n']}, {r['model_bytes']} bytes, "
                            f"ops {', '.join(r['ops'])}"))
    if a.json:
        write_json(a.json, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
