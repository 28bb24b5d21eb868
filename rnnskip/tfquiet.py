"""TensorFlow without its start-up chatter on stderr.

Importing TensorFlow and running its first ops print C++ log lines (oneDNN,
CUDA probing, absl) straight to file descriptor 2, which TF_CPP_MIN_LOG_LEVEL does
not fully silence. rnnskip's contract is one line per error on stderr, so the
commands that train (train-predictor, delta-train) run TensorFlow with fd 2
pointed at /dev/null. Python exceptions still reach the caller; RNNSKIP_DEBUG=1
keeps stderr as it is.
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
