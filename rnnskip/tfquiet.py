"""TensorFlow as the training commands run it: without its start-up chatter on stderr,
and reproducible from a seed.

Importing TensorFlow and running its first ops print C++ log lines (oneDNN,
CUDA probing, absl) straight to file descriptor 2, which TF_CPP_MIN_LOG_LEVEL does
not fully silence. rnnskip's contract is one line per error on stderr, so the
commands that train (train-predictor, delta-train) run TensorFlow with fd 2
pointed at /dev/null. Python exceptions still reach the caller; RNNSKIP_DEBUG=1
keeps stderr as it is.

Reproducible: :func:`seed_training` seeds every generator and gives TensorFlow one
inter-op and one intra-op thread, so the same seed, data and package versions give
the same weights bit for bit in every process.
"""
from __future__ import annotations

import contextlib
import os
import sys


@contextlib.contextmanager
def quiet_stderr():
    """Send file descriptor 2 to /dev/null inside the block (not with RNNSKIP_DEBUG)."""
    if os.environ.get("RNNSKIP_DEBUG"):
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_keras():
    """(tensorflow, tf_keras), imported quietly, with TensorFlow's Python loggers at ERROR."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with quiet_stderr():
        import tensorflow as tf
        import tf_keras
    tf.get_logger().setLevel("ERROR")
    try:
        import absl.logging
        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:
        pass
    return tf, tf_keras


def seed_training(seed: int) -> bool:
    """Seed Python, NumPy and TensorFlow and run TensorFlow on one thread; True when the
    training that follows is reproducible across processes.

    With TensorFlow's default thread pools two processes with the same seed train different
    weights (a one-epoch delta-train of a GRU(64) differed by up to 9e-4): parallel kernels
    add partial sums in an order that depends on thread timing. One inter-op and one
    intra-op thread fix the order (on 2 cores that cost ~7% of a small delta-train's time).
    TensorFlow fixes its thread pools when it first runs an op, so a process that already
    ran TensorFlow with more threads keeps them: False then, and the caller says the result
    is not reproducible."""
    tf, tfk = import_keras()
    try:
        tf.config.threading.set_inter_op_parallelism_threads(1)
        tf.config.threading.set_intra_op_parallelism_threads(1)
    except RuntimeError:   # already initialised in this process
        pass
    tfk.utils.set_random_seed(seed)
    return (tf.config.threading.get_inter_op_parallelism_threads() == 1
            and tf.config.threading.get_intra_op_parallelism_threads() == 1)
