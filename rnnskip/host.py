"""Run the host build (ctypes) of the generated model over whole datasets."""
from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np


class HostModel:
    """The generated C model compiled for this machine; same I/O as the firmware."""

    def __init__(self, so_path: Path, token_input: bool, step_len: int, out_len: int):
        self.lib = ctypes.CDLL(str(so_path))
        self.token_input, self.step_len, self.out_len = token_input, step_len, out_len
        self.max_t = ctypes.c_int32.in_dll(self.lib, "rnnskip_io_max_t").value
        xt = ctypes.c_int32 if token_input else ctypes.c_int8
        self.x = (xt * (self.max_t * step_len)).in_dll(self.lib, "rnnskip_io_x")
        self.valid = (ctypes.c_uint8 * self.max_t).in_dll(self.lib, "rnnskip_io_valid")
        self.flags = (ctypes.c_uint8 * self.max_t).in_dll(self.lib, "rnnskip_io_flags")
        self.out = (ctypes.c_int16 * out_len).in_dll(self.lib, "rnnskip_io_out")
        self.T = ctypes.c_int32.in_dll(self.lib, "rnnskip_io_T")
        self.use_valid = ctypes.c_int32.in_dll(self.lib, "rnnskip_io_use_valid")
        self.lib.rnnskip_io_run.restype = ctypes.c_int32

    def run(self, x_dev: np.ndarray, T: int, valid=None):
        """One sequence of device inputs -> (int16 out [out_len], uint8 flags [T])."""
        flat = np.ascontiguousarray(x_dev[:T]).reshape(-1)
        ctypes.memmove(self.x, flat.ctypes.data, flat.nbytes)
        self.T.value = int(T)
        if valid is not None:
            v = np.ascontiguousarray(valid[:T], dtype=np.uint8)
            ctypes.memmove(self.valid, v.ctypes.data, T)
            self.use_valid.value = 1
        else:
            self.use_valid.value = 0
        self.lib.rnnskip_io_run()
        out = np.ctypeslib.as_array(self.out).astype(np.int64).copy()
        flags = np.ctypeslib.as_array(self.flags)[:T].copy()
        return out, flags
