"""C generation for delta mode: weights in the column-major paired layout,
state sizes and the template context (see rnnskip_delta_kernels.h)."""
from __future__ import annotations

import numpy as np

from ..quant.layout import pack_paired


def pack_columns(w: np.ndarray) -> np.ndarray:
    """int8 ``W [rows, cols]`` -> int16 ``[cols, rows // 2]``, ``v[k][p] = 256 W[2p+1][k] + W[2p][k]``.

    Column k occupies ``rows`` bytes at byte offset ``k * rows``.
    """
    return np.ascontiguousarray(pack_paired(np.asarray(w, np.int8)).T, dtype="<i2")


def list_words(max_cols: int) -> int:
    """int32 words a transmit list needs for ``max_cols`` columns (+ the padding entry)."""
    return 3 * ((int(max_cols) + 2) // 2)


#: Dense fallback: when more than this fraction of a layer's columns transmit, the step
#: recomputes M = bias + W @ last with the dense mat-vec (bit-identical: M always equals
#: that) instead of the column-sparse kernel, which costs ~1.5x more per MAC on the M4.
#: Needs the row-major weights in flash too; DeltaSpec.dense_fallback = 0 turns it off.
DENSE_FALLBACK = 0.6


def delta_context(qm):
    """Template context for delta mode (None when ``qm.delta`` is not set).

    Returns {"layers": [...], "list_words": int, "arrays": [(name, values, dtype, doc)]}.
    Per layer: ``merged`` (LSTM: input and hidden columns update the same rows, one
    list and one column-sparse call over ``[in_p + up]`` columns), else the GRU's three
    calls on M = [cx | z | r | ch]: z and r for every transmitting column, cx for the
    input columns, ch for the hidden ones (columns stored as rows [z | r | n]).
    """
    spec = getattr(qm, "delta", None)
    if spec is None:
        return None
    from ..quant.delta_golden import delta_layout
    from .spec import check_supported
    check_supported(qm.layers)
    fb = getattr(spec, "dense_fallback", DENSE_FALLBACK)
    layers, arrays, list_len = [], [], 0
    for i, (l, tx, th) in enumerate(zip(qm.layers, spec.theta_x, spec.theta_h)):
        D = delta_layout(l)
        merged = D.x_row0 == D.h_row0 and D.rows_x == D.rows_h
        p = f"rnnskip_l{i}_d"
        if merged:
            w = np.concatenate([D.wx, D.wh], axis=1)
            arrays.append((f"{p}_w", pack_columns(w), np.int16,
                           f"{l.name} delta: weights [{w.shape[0]} rows] column-major, {w.shape[1]} columns "
                           f"(input then hidden), row pairs packed as int16 256*w[2p+1]+w[2p]"))
        else:
            # GRU: every column stored as rows [z | r | n] (n = cx for input columns, ch for hidden
            # ones), so one pass covers z and r for all transmitting columns and two short passes
            # the candidate rows: a third fewer per-row-block overheads than one pass per part
            U = l.up
            wx = np.concatenate([D.wx[U:3 * U], D.wx[:U]], axis=0)
            w = np.concatenate([wx, D.wh], axis=1)
            arrays.append((f"{p}_w", pack_columns(w), np.int16,
                           f"{l.name} delta: {l.in_p} input then {l.up} hidden columns x rows [z | r | n] "
                           f"({3 * U}; n = cx for input columns, ch for hidden ones), column-major paired"))
        list_len = max(list_len, list_words(w.shape[1]) + 3)   # + the GRU's mid-list pair padding
        arrays.append((f"{p}_m0", D.m0, np.int32, f"{l.name} delta: running sums at sequence start (the biases)"))
        U = l.up
        if l.kind == "lstm":
            g = l.mats["gates"].mult
            planes = [g[k * U:(k + 1) * U] for k in range(4)]
        else:
            zr = l.mats["zr"].mult
            planes = [l.mats["cx"].mult, zr[:U], zr[U:], l.mats["ch"].mult]
        arrays.append((f"{p}_mi", np.stack(planes, axis=1).reshape(-1), np.int32,
                       f"{l.name} delta: requantisation multipliers interleaved per unit "
                       + ("(i, f, g, o)" if l.kind == "lstm" else "(cx, z, r, ch)")))
        cols = l.in_p + l.up
        layers.append({"merged": merged, "col_bytes": w.shape[0], "m_rows": D.m_rows, "theta_x": int(tx),
                       "theta_h": int(th), "fallback_n": int(fb * cols) if fb and fb > 0 else None})
    return {"layers": layers, "list_words": list_len, "arrays": arrays, "dense_fallback": fb}
