"""Which importer reads a model file: by its suffix (``.onnx``: the ONNX importer; anything
else: the Keras importer, which also names the formats it reads when a file is neither)."""
from __future__ import annotations

import os

from rnnskip.converter.ir import ModelIR


def is_onnx(path) -> bool:
    return os.fspath(path).lower().endswith(".onnx")


def load_model_file(path) -> ModelIR:
    """The checked IR of a Keras or ONNX file (one-line RnnskipError otherwise)."""
    if is_onnx(path):
        from rnnskip.converter.onnx import load_onnx_file
        return load_onnx_file(path)
    from rnnskip.converter.keras_import import load_model_file as load_keras
    return load_keras(path)


def describe_model_file(path):
    """``rnnskip inspect``'s rows: a Keras file's layers or an ONNX file's nodes."""
    if is_onnx(path):
        from rnnskip.converter.onnx import describe_onnx_file
        return describe_onnx_file(path)
    from rnnskip.converter.keras_import import describe_model_file as describe_keras
    return describe_keras(path)
