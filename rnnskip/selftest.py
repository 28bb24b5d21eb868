"""On-device self-test vectors (``rnnskip-convert --selftest N``): the first N sequences of the
user's data exactly as given (float features or token ids) and the golden model's outputs on them,
rendered into ``src/rnnskip_selftest.c``. ``rnnskip_selftest(&state)`` runs them through the public
API (rnnskip_quantize_features, rnnskip_step_valid, rnnskip_step, rnnskip_finish, rnnskip_output),
so a port - another compiler, flags, core - checks the whole input path bit for bit on the board."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class SelfTest:
    x: np.ndarray          # float32 [n, T, F] features, or int32 [n, T] token ids, as the user gave them
    lengths: np.ndarray    # int64 [n]: steps each sequence feeds
    expected: np.ndarray   # int64 [n, output_dim]: the golden model's outputs ([n, T, output_dim]: per step)
    token_input: bool

    @property
    def n(self) -> int:
        return int(len(self.lengths))

    @property
    def per_step(self) -> bool:
        return self.expected.ndim == 3

    def expected_flat(self) -> np.ndarray:
        """The outputs in the order the C reads them: per sequence, or per step of each sequence."""
        from .outputs import flat_for_c
        return flat_for_c(self.expected, self.lengths)

    def flash_bytes(self) -> int:
        """The vectors' bytes in flash (inputs, lengths, offsets, expected outputs)."""
        steps = int(np.sum(self.lengths))
        per_step = 4 if self.token_input else 4 * int(self.x.shape[2])
        return steps * per_step + 8 * self.n + 2 * int(self.expected_flat().size)


def make_selftest(qm, x, lengths, n: int) -> SelfTest:
    """The first ``n`` sequences of (x, lengths) and the golden model's outputs on them (the step
    methods attached to ``qm`` included); a model with an output per step: the output after every step."""
    from .quant.golden import GoldenModel
    n = min(int(n), len(x))
    lengths = np.asarray(lengths[:n], np.int64).reshape(-1)
    xs = np.asarray(x[:n], np.int32 if qm.token_input else np.float32)
    out, _ = GoldenModel(qm).run(xs, lengths)
    return SelfTest(x=xs, lengths=lengths, expected=np.asarray(out, np.int64)[..., : qm.output_dim],
                    token_input=bool(qm.token_input))


def _float_literal(v: float) -> str:
    """A float32 value as an exact C literal (hex float), NaN and infinities included."""
    if math.isnan(v):
        return "__builtin_nanf(\"\")"
    if math.isinf(v):
        return "__builtin_inff()" if v > 0 else "-__builtin_inff()"
    mant, exp = float(v).hex().split("p")
    return f"{mant.rstrip('0').rstrip('.')}p{exp}f"   # 0x1.8p+3f: exact, trailing zeros dropped


def _rows(items, per_line: int) -> str:
    items = list(items) or ["0"]
    return ",\n".join("    " + ", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line))


def context(st: SelfTest) -> dict:
    """The template's values: the inputs concatenated over the sequences' steps, offsets, outputs."""
    T = [int(t) for t in st.lengths]
    out = st.expected_flat()
    off = [int(o) for o in np.concatenate([[0], np.cumsum(T)[:-1]])] if T else [0]
    parts = [st.x[i, :T[i]].reshape(-1) for i in range(st.n)]
    flat = np.concatenate(parts) if parts else np.zeros(0, st.x.dtype)
    if st.token_input:
        x_body = _rows((str(int(v)) for v in flat), 16)
    else:
        x_body = _rows((_float_literal(float(v)) for v in flat.astype(np.float32)), 6)
    return {"selftest_n": st.n, "selftest_T": ", ".join(map(str, T or [0])),
            "selftest_off": ", ".join(map(str, off)), "selftest_x_len": max(len(flat), 1), "selftest_x": x_body,
            "selftest_out_len": max(int(out.size), 1), "selftest_max_T": max(T or [1]),
            "selftest_out": _rows((str(int(v)) for v in out), 16)}


def run_on_host(so) -> int:
    """rnnskip_selftest() of a host build (its shared library's path) on its harness state: failed sequences."""
    import ctypes
    fn = ctypes.CDLL(str(so)).rnnskip_io_selftest
    fn.restype = ctypes.c_int32
    return int(fn())


def selftest_section(st: SelfTest, so=None) -> dict:
    """report.json's ``selftest``: what src/rnnskip_selftest.c holds and, with a host build, its result."""
    sec = {"file": "src/rnnskip_selftest.c", "function": "rnnskip_selftest", "sequences": st.n,
           "steps": int(np.sum(st.lengths)), "flash_bytes": st.flash_bytes()}
    if so is not None:
        sec["host_failures"] = run_on_host(so)
    return sec
