"""C generation for delta mode: weights in the column-major paired layout, the
column-sparse calls of each layer, state sizes (see rnnskip_delta_kernels.h and
firmware_templates/model/delta.c.j2)."""
from __future__ import annotations

import numpy as np

from ..quant.layout import pack_paired
from .cellrule import cell_limits
from .layout import delta_layout
from .spec import check_supported


def pack_columns(w: np.ndarray) -> np.ndarray:
    """int8 ``W [rows, cols]`` -> int16 ``[cols, rows // 2]``, ``v[k][p] = 256 W[2p+1][k] + W[2p][k]``.

    Column k occupies ``rows`` bytes at byte offset ``k * rows``.
    """
    return np.ascontiguousarray(pack_paired(np.asarray(w, np.int8)).T, dtype="<i2")


#: data-cache line the column stride is laid out for (the Cortex-M7's L1 line; twice the STM32F4 ART's)
CACHE_LINE = 32


def column_rows(rows: int) -> int:
    """Stored bytes per column for ``rows`` int8 rows: columns of 8 or more cache lines are padded
    to an odd number of lines (at most 1/8 more flash). A transmit list walks one line of every
    transmitting column per row pass; with a power-of-two column stride those lines fall into a few
    sets of a set-associative data cache and evict each other (the STM32F746's 4 KiB 4-way D-cache:
    256-byte columns use 4 of its 32 sets), with an odd number of lines they spread over all sets.
    The padding rows are never read."""
    n = -(-int(rows) // CACHE_LINE)
    if n < 8:
        return int(rows)
    return (n + (n % 2 == 0)) * CACHE_LINE


def list_words(max_cols: int) -> int:
    """int32 words a transmit list needs for ``max_cols`` columns (+ the padding entry)."""
    return 3 * ((int(max_cols) + 2) // 2)


def _layer(l, D):
    """Column-major weights and the sparse calls of one layer.

    Input and hidden columns updating the same rows (an LSTM): one list, one call over
    ``in_p + up`` columns. Disjoint rows of one height (an LSTM with its halves on their own
    scales: input columns rows [ix..ox], hidden ones [ih..oh]): one call per part. Otherwise
    (a GRU: input columns rows [n | z | r], hidden ones [z | r | hn]) every column is stored
    as rows [shared | own] (shared: the rows both update, own: the part's other rows, as many
    for both parts), so one call covers the shared rows for all transmitting columns and two
    short calls each part's own rows.
    Returns (w [col_bytes, cols], calls, merged); a call is (weight offset in int16,
    list part "all" | "x" | "h", first row of M, rows).
    """
    x0, x1 = D.x_row0, D.x_row0 + D.rows_x
    h0, h1 = D.h_row0, D.h_row0 + D.rows_h
    if not D.rows_h:   # no hidden columns (a per-step Dense): the input columns alone
        return D.wx, [(0, "x", x0, D.rows_x)], False
    if (x0, x1) == (h0, h1):
        return np.concatenate([D.wx, D.wh], axis=1), [(0, "all", x0, x1 - x0)], True
    s0, s1 = max(x0, h0), min(x1, h1)
    if s1 <= s0 and D.rows_x == D.rows_h:
        return np.concatenate([D.wx, D.wh], axis=1), [(0, "x", x0, D.rows_x), (0, "h", h0, D.rows_h)], False
    own_x = [r for r in (range(x0, s0), range(s1, x1)) if len(r)]
    own_h = [r for r in (range(h0, s0), range(s1, h1)) if len(r)]
    if s1 <= s0 or len(own_x) != 1 or len(own_h) != 1 or len(own_x[0]) != len(own_h[0]):
        raise ValueError(f"layer '{l.name}': no column layout for input rows {x0}..{x1}, hidden rows {h0}..{h1}")
    ox, oh = own_x[0], own_h[0]
    wx = np.concatenate([D.wx[s0 - x0:s1 - x0], D.wx[ox.start - x0:ox.stop - x0]], axis=0)
    wh = np.concatenate([D.wh[s0 - h0:s1 - h0], D.wh[oh.start - h0:oh.stop - h0]], axis=0)
    shared = s1 - s0
    calls = [(0, "all", s0, shared), (shared // 2, "x", ox.start, len(ox)), (shared // 2, "h", oh.start, len(oh))]
    return np.concatenate([wx, wh], axis=1), calls, False


def delta_context(qm, spec):
    """Template context for delta mode: {"layers": [...], "list_words": int, "arrays":
    [(name, values, dtype, doc)]}. Per layer ``merged``, ``hidden`` (False: a per-step Dense, no hidden
    columns), ``col_bytes`` (int8 rows per
    stored column), ``m_rows``, thresholds (``theta_m`` None: no cell threshold),
    ``planes`` (running sums per unit) and ``calls`` (see :func:`_layer`). The
    column-major weights are the only copy: the dense row-major ones are not referenced
    (the linker drops them)."""
    check_supported(qm.layers)
    layers, arrays, list_len = [], [], 0
    for i, (l, tx, th, tm) in enumerate(zip(qm.layers, spec.theta_x, spec.theta_h, spec.theta_m)):
        D = delta_layout(l)
        w, calls, merged = _layer(l, D)
        w = np.pad(w, ((0, column_rows(w.shape[0]) - w.shape[0]), (0, 0)))
        p = f"rnnskip_l{i}_d"
        hidden = bool(D.rows_h)
        arrays.append((f"{p}_w", pack_columns(w), np.int16,
                       f"{l.name} delta: {l.in_p} input " + (f"then {l.up} hidden " if hidden else "")
                       + f"columns of {w.shape[0]} rows, "
                       + ("" if merged or not hidden else "each stored as [rows both parts update | the part's own "
                                                          "rows], ")
                       + "column-major, row pairs packed as int16 256*w[2p+1]+w[2p]"))
        list_len = max(list_len, list_words(w.shape[1]) + (0 if merged else 3))   # + a mid-list pair padding
        arrays.append((f"{p}_m0", D.m0, np.int32, f"{l.name} delta: running sums at sequence start (the biases)"))
        if tm is not None:
            arrays.append((f"{p}_lim", cell_limits(l, tm), np.uint32,
                           f"{l.name} delta: cell threshold {tm} as 2T-1 per running sum (|M - Ml| >= T: evaluate)"))
        layers.append({"merged": merged, "hidden": hidden, "col_bytes": int(w.shape[0]), "m_rows": D.m_rows,
                       "theta_x": int(tx),
                       "theta_h": int(th), "calls": calls, "theta_m": tm, "planes": D.m_rows // l.up})
    return {"layers": layers, "list_words": list_len, "arrays": arrays}
