"""Integer gate and Dense activations beyond sigmoid/tanh (issue 7), bit-exact with
rnnskip/kernels/rnnskip_act_kernels.h.

Every activation maps an int16 Q3.12 pre-activation (range [-8, 8)) to int16 in a
fixed output format:

* bounded activations -- ``sigmoid``, ``tanh``, ``hard_sigmoid`` (Keras 2:
  clip(0.2x + 0.5)), ``hard_sigmoid_k3`` (Keras 3: clip(x/6 + 0.5)), ``softsign`` --
  give **Q0.15** through a 257-point table over [-8, 8] with linear interpolation
  (the sigmoid/tanh tables of fixedpoint.py, three more here);
* unbounded activations -- ``relu``, ``linear`` -- give **Q3.12**: the pre-activation
  itself (clipped at 0 for relu). Saturating them to Q0.15 would clip every value
  beyond +-1; in Q3.12 they keep the pre-activation's range [-8, 8) at 2^-12
  resolution. Everything that consumes a gate output shifts by that gate's format
  (:func:`out_q`), so the LSTM/GRU cell arithmetic is the same code for all of them.

The hard_sigmoid kinks (+-2.5, +-3) lie on the table grid (step 1/16), so the
interpolated tables are exact up to rounding.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..converter.support import hard_sigmoid_k2, hard_sigmoid_k3, softsign
from ..errors import RnnskipError
from . import fixedpoint as fp

HARD_SIGMOID_LUT = fp._lut(hard_sigmoid_k2)
HARD_SIGMOID_K3_LUT = fp._lut(hard_sigmoid_k3)
SOFTSIGN_LUT = fp._lut(softsign)

#: table activations -> their 257-point Q0.15 tables
LUTS = {
    "sigmoid": fp.SIGMOID_LUT,
    "tanh": fp.TANH_LUT,
    "hard_sigmoid": HARD_SIGMOID_LUT,
    "hard_sigmoid_k3": HARD_SIGMOID_K3_LUT,
    "softsign": SOFTSIGN_LUT,
}
#: activation ids in C (0..3 are rnnskip_kernels.h's RNNSKIP_ACT_*; 4..6 rnnskip_act_kernels.h)
ACT_IDS = {"linear": 0, "relu": 1, "tanh": 2, "sigmoid": 3, "hard_sigmoid": 4,
           "hard_sigmoid_k3": 5, "softsign": 6}
#: activations the default kernels (rnnskip_kernels.h) already handle in Dense layers
DEFAULT_DENSE = {"linear", "relu", "tanh", "sigmoid"}

#: generated C tables (rnnskip_act_luts.c), see :func:`render_luts`
LUTS_C = Path(__file__).resolve().parent.parent / "kernels" / "rnnskip_act_luts.c"
_C_TABLES = (("rnnskip_hard_sigmoid_lut", HARD_SIGMOID_LUT, "hard_sigmoid (Keras 2): clip(0.2x + 0.5, 0, 1)"),
             ("rnnskip_hard_sigmoid_k3_lut", HARD_SIGMOID_K3_LUT, "hard_sigmoid (Keras 3): clip(x/6 + 0.5, 0, 1)"),
             ("rnnskip_softsign_lut", SOFTSIGN_LUT, "softsign: x / (1 + |x|)"))


def check_rnn(layer) -> None:
    """The activations of an LSTM/GRU layer the int8 kernels implement (see converter/support.py)."""
    from ..converter.support import RNN_RECURRENT_ACTIVATIONS, rnn_activation_refusal
    msg = rnn_activation_refusal(layer)
    if msg:
        raise RnnskipError(msg)
    check(layer.activation, f"layer '{layer.name}' ({layer.kind.upper()})")
    assert layer.recurrent_activation in RNN_RECURRENT_ACTIVATIONS


def check(name: str, where: str) -> None:
    if name not in ACT_IDS:
        raise RnnskipError(f"{where} uses activation '{name}', which has no int8 kernel; "
                           f"rnnskip implements {', '.join(sorted(ACT_IDS))}")


def out_q(name: str) -> int:
    """Fractional bits of the activation's int16 output: 15 (tables) or 12 (relu, linear)."""
    return fp.Q15 if name in LUTS else fp.Q12


def is_default_cell(layer) -> bool:
    """True for tanh/sigmoid layers, which keep the original kernels and code path."""
    return (getattr(layer, "activation", "tanh") == "tanh"
            and getattr(layer, "recurrent_activation", "sigmoid") == "sigmoid")


def act_q(name: str, x):
    """int16 Q3.12 -> int16 in :func:`out_q` format (rnnskip_act_q)."""
    x = np.asarray(x, dtype=np.int64)
    if name == "linear":
        return x
    if name == "relu":
        return np.maximum(x, 0)
    return fp._lut_eval(x, LUTS[name])


def cell_act(name: str, c, cell_shift: int):
    """LSTM output activation on the cell state (int16 at 2^-cell_shift).

    Tables: Q0.15 of act(c as Q3.12); relu/linear: the cell itself, still at
    2^-cell_shift (see :func:`cell_out_q`)."""
    c = np.asarray(c, dtype=np.int64)
    if name == "linear":
        return c
    if name == "relu":
        return np.maximum(c, 0)
    return fp._lut_eval(fp.to_q12(c, cell_shift), LUTS[name])


def cell_out_q(name: str, cell_shift: int) -> int:
    return fp.Q15 if name in LUTS else int(cell_shift)


def hidden_q(layer, cell_shift: int) -> int:
    """Fractional bits of the Q value the int8 hidden state is requantised from:
    LSTM round_shift(o * act(c), q_o) is at :func:`cell_out_q`; GRU h16 at out_q(act)."""
    act = getattr(layer, "activation", "tanh")
    if layer.kind == "lstm":
        return cell_out_q(act, cell_shift)
    return out_q(act)


def _c_array(name: str, values, doc: str) -> str:
    rows = [", ".join(f"{int(v)}" for v in values[i:i + 12]) for i in range(0, len(values), 12)]
    body = ",\n    ".join(rows)
    return f"/* {doc} */\nconst int16_t {name}[RNNSKIP_LUT_POINTS] = {{\n    {body}\n}};\n"


def render_luts() -> str:
    return ("/* Generated by `python -m rnnskip.quant.act` from rnnskip/quant/act.py; do not edit.\n"
            " * Activations at x = (i - 128) / 16, i = 0..256, in Q0.15, clipped to +-32767. */\n"
            '#include "rnnskip_act_kernels.h"\n\n'
            + "\n".join(_c_array(*t) for t in _C_TABLES))


if __name__ == "__main__":
    LUTS_C.write_text(render_luts())
    print(f"wrote {LUTS_C}")


def c_context(qm) -> dict:
    """Template context for the activation variants (added to generate.model_context):
    which layers use the ``*_act_*`` kernels, which Dense function each Dense calls,
    and whether the model has per-step outputs (rnnskip_io.c.j2)."""
    dense = ([qm.input_dense] if qm.input_dense is not None else []) + list(qm.head[:-1])
    act_layers = [not is_default_cell(l) for l in qm.layers]
    need = any(act_layers) or any(d.activation not in DEFAULT_DENSE for d in dense)

    def fc_fn(activation: str) -> str:
        return "rnnskip_fully_connected_s8" if activation in DEFAULT_DENSE else "rnnskip_fully_connected_act_s8"

    return {"act_ids": dict(ACT_IDS), "act_kernels": need, "act_layers": act_layers, "fc_fn": fc_fn,
            "per_step": bool(getattr(qm, "per_step", False))}
