"""Handlers of the lengths input: each row's last valid step and each row's mean over its own steps."""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from rnnskip.converter.onnx.symbolic import (
    CONST,
    IDS,
    IDX,
    LENGTHS_READ,
    LENS,
    MASK,
    MSEQ,
    MSUM,
    SEQ,
    SHAPE,
    STATE,
    Sym,
    X,
    _axes_arg,
    _Ctx,
    _data,
    _entries_of,
    _norm,
    _Reader,
    _roles,
    _time_label,
)

# --------------------------------------------------------------------------
# handlers: each row's last valid step (out[torch.arange(B), lengths - 1])
#
# PyTorch runs every step of a padded batch; reading each row's output at lengths - 1 reads the state after that
# row's own steps, which is the final state rnnskip computes when the data's lengths stop each row (as Keras'
# masking does). The index is followed as a sum of terms, so a gather converts only where it reads exactly that.

LAST = "last"   # the term lengths - 1


def _idx(axes, *cols) -> Sym:
    return Sym(IDX, axes=tuple(axes), terms=tuple(tuple(sorted(c.items())) for c in cols))


def _lengths_input(r: _Reader) -> str:
    return next(n for n, s in r.syms.items() if s.kind == LENS)


def h_range(ctx: _Ctx):
    """Range: constants fold; Range(0, size, 1) of an input axis's size is the positions along it (torch.arange(
    x.size(0)): the batch positions that index each row's last valid step; along time, the steps a mask compares
    with the lengths)."""
    start, limit, delta = ctx.ins[:3]
    if all(s.kind == CONST for s in (start, limit, delta)):
        return [Sym(CONST, value=np.arange(start.value, limit.value, delta.value))], "folded (glue)"
    e = _entries_of(limit)
    if start.kind == CONST and delta.kind == CONST and np.ndim(start.value) == 0 and int(start.value) == 0 and \
            int(delta.value) == 1 and e is not None and len(e) == 1 and e[0] is not None and e[0][0] == 1 and \
            len(e[0][1]) == 1:
        lab = e[0][1][0]
        return [_idx((lab,), {f"pos:{lab}": (1, ())})], "folded (positions along an axis)"
    if not any(_data(s.kind) for s in ctx.ins):
        return [Sym(SHAPE)], "folded (glue)"
    ctx.fail("builds a range from model data: rnnskip reads a Range only as the positions along an input axis "
             "(torch.arange(batch), torch.arange(time))")


def _static_rows(s: Sym) -> Sym:
    """A constant 0, k, 2k, .. (k >= 1), one per row ([B] or [B, 1]): the batch positions times k, as a graph exported
    with a static batch holds torch.arange(B), or torch.arange(B) * T folded (k then checked against the axis size it
    stands for: _gather_flat)."""
    v = np.asarray(s.value) if s.kind == CONST else None
    if v is None or v.ndim not in (1, 2) or (v.ndim == 2 and v.shape[1] != 1) or len(v) < 2 or v.dtype.kind not in "iu":
        return s
    v = v.reshape(-1)
    if v[1] >= 1 and np.array_equal(v, np.arange(len(v)) * v[1]):
        return _idx(("LN",) + ("1",) * (np.ndim(s.value) - 1), {"pos:LN": (int(v[1]), ())})
    return s


def _idx_arith(ctx: _Ctx) -> Sym:
    """Add of two indices, Mul of an index by a size or a constant: the terms' coefficients follow."""
    a, b = _static_rows(ctx.inp(0)), _static_rows(ctx.inp(1))
    if ctx.op == "Add" and a.kind == b.kind == IDX and len(a.terms) == len(b.terms) == 1:
        if len(a.axes) != len(b.axes):
            ctx.fail(LENGTHS_READ)
        terms = dict(a.terms[0])
        for name, (f, labels) in b.terms[0]:
            if name in terms and terms[name][1] != labels:
                ctx.fail(LENGTHS_READ)
            terms[name] = (terms.get(name, (0, labels))[0] + f, labels)
        return _idx(a.axes, terms)
    s, c = (a, b) if a.kind == IDX else (b, a)
    e = _entries_of(c)
    if ctx.op == "Mul" and len(s.terms) == 1 and e is not None and len(e) == 1 and e[0] is not None:
        f2, l2 = e[0]
        return _idx(s.axes, {name: (f * f2, tuple(sorted(labels + l2))) for name, (f, labels) in s.terms[0]})
    ctx.fail(LENGTHS_READ)


def _idx_concat(ctx: _Ctx) -> Sym:
    """Indices side by side on their last axis, each one column: GatherND's [batch, 2] index."""
    ins = [_static_rows(s) for s in ctx.ins]
    first = ins[0]
    axis = _norm(int(ctx.attrs.get("axis", 0)), len(first.axes))
    if any(s.kind != IDX or len(s.axes) != len(first.axes) or s.axes[axis] != "1" for s in ins) or \
            axis != len(first.axes) - 1:
        ctx.fail("concatenates indices other than the batch positions and lengths - 1 as GatherND's columns: "
                 "rnnskip reads out[arange(batch), lengths - 1]")
    return Sym(IDX, axes=first.axes[:-1] + ("K",), terms=tuple(t for s in ins for t in s.terms))


def _idx_reshape(ctx: _Ctx, s: Sym) -> Sym:
    """(lengths - 1).view(-1, 1, 1): the per-row index with size-1 axes around it."""
    tgt = ctx.inp(1)
    rows = [ax for ax in s.axes if ax != "1"]
    target = [int(v) for v in np.asarray(tgt.value).reshape(-1)] if tgt.kind == CONST else None
    if len(s.terms) != 1 or len(rows) != 1 or target is None or [v for v in target if v != 1] not in ([-1], [0]):
        ctx.fail("reshapes an index other than by adding size-1 axes to the per-row lengths - 1: rnnskip reads "
                 "out.gather(1, (lengths - 1).view(-1, 1, 1).expand(-1, 1, hidden))")
    return _idx(tuple(rows[0] if v != 1 else "1" for v in target), dict(s.terms[0]))


def _data_axes(ctx: _Ctx, data: Sym) -> Tuple[str, str]:
    """The batch and time labels of a recurrent output [batch, time, hidden] (either order of the first two)."""
    if data.kind != SEQ or len(data.axes) != 3 or data.axes[2] != "F" or \
            sorted(_roles(ctx.r, data)) != ["F", "N", "T"]:
        ctx.fail(f"gathers from {data.kind} data of axes {data.axes}: rnnskip reads each row's last valid step of "
                 "a recurrent output [batch, time, hidden] (out[arange(batch), lengths - 1])")
    n = next(ax for ax in data.axes if ctx.r.roles.get(ax) == "N")
    return n, _time_label(ctx, data)


def _index_of(terms, n: str) -> dict:
    """One index column's terms, the batch named by its label (the lengths input's own axis is the batch too)."""
    fix = lambda labels: tuple(sorted(n if x == "LN" else x for x in labels))   # noqa: E731
    return {("pos:" + n if name == "pos:LN" else name): (f, fix(labels)) for name, (f, labels) in terms}


def _reads_lengths(ctx: _Ctx, rnn, what: str) -> None:
    """The model reads each row's own steps (``what``): the lengths input becomes the data's lengths, which stop
    each row in rnnskip. Not through a bidirectional layer (PyTorch's backward direction has run over the padding
    there) or a Conv front end (its frames are not the input's steps)."""
    r = ctx.r
    if rnn.backward is not None:
        ctx.fail(f"{what} of bidirectional operator '{rnn.name}', whose backward direction there has read the "
                 "padding after the row's length: rnnskip reads each row's own steps of forward layers (a "
                 "bidirectional layer with lengths: sequence_lens on the operator, Y_h read)")
    if r.front:
        ctx.fail(f"{what} after a Conv front end, whose frames are not the input's steps: rnnskip streams each row's "
                 "steps through the front end; read out[:, -1]")
    name = _lengths_input(r)
    if any(n and n != name for n in r.rnn_lens):
        ctx.fail(f"reads the lengths '{name}' where the recurrent operator's sequence_lens is another input: not "
                 "supported")
    if not r.last_valid:
        r.notes.append(f"'{name}' gives each row's length (the model reads each row's own steps): pass it as lengths "
                       "in --data")
    r.last_valid = name


def _last_valid(ctx: _Ctx, data: Sym, axes: Tuple[str, ...]) -> Sym:
    _reads_lengths(ctx, ctx.r.rnns[data.layer], "takes each row's last valid step")
    return Sym(STATE, axes=axes, width=data.width, layer=data.layer)


def h_gather_nd(ctx: _Ctx):
    """out[torch.arange(B), lengths - 1] as the dynamo exporter writes it: GatherND with a [batch, 2] index."""
    data, idx = ctx.inp(0), ctx.inp(1)
    if idx.kind != IDX or int(ctx.attrs.get("batch_dims", 0)) != 0:
        ctx.fail(f"gathers from {data.kind} data with {idx.kind} indices: rnnskip reads GatherND only as each row's "
                 "last valid step of a recurrent output (out[arange(batch), lengths - 1])")
    n, t = _data_axes(ctx, data)
    want = [{f"pos:{n}": (1, ())} if ax == n else {LAST: (1, ())} for ax in data.axes[:2]]
    if [_index_of(c, n) for c in idx.terms] != want:
        ctx.fail("indexes a recurrent output other than at each row's last valid step: rnnskip reads "
                 "out[arange(batch), lengths - 1] (out[lengths - 1, arange(batch)] time-major)")
    return [_last_valid(ctx, data, (n, "F"))], "converted (each row's last valid step)"


def h_gather_elements(ctx: _Ctx):
    """out.gather(1, (lengths - 1).view(-1, 1, 1).expand(-1, 1, hidden)): one step per row along the time axis."""
    data, idx = ctx.inp(0), ctx.inp(1)
    if idx.kind != IDX:
        ctx.fail(f"gathers from {data.kind} data with {idx.kind} indices: rnnskip reads GatherElements only as each "
                 "row's last valid step of a recurrent output (out.gather(1, (lengths - 1).view(-1, 1, 1).expand(-1, "
                 "1, hidden)))")
    n, t = _data_axes(ctx, data)
    ax = _norm(int(ctx.attrs.get("axis", 0)), 3)
    rows = ["1" if a == "1" else n if a in ("LN", n) else "?" for a in idx.axes]
    sizes = ctx.r.dims.get(ctx.node.input[1])   # the index's own shape: one step, every hidden unit
    fixed = sizes is not None and len(sizes) == 3 and all(isinstance(sizes[k], int) for k, a in enumerate(data.axes)
                                                          if a != n)
    if not fixed:
        ctx.fail("gathers with an index whose shape the graph does not fix, so rnnskip cannot check it reads every "
                 "hidden unit of one step: export with dynamo=True, or index out[torch.arange(B), lengths - 1]")
    whole = all(sizes[k] == (1 if a == t else data.width) for k, a in enumerate(data.axes) if a != n)
    if data.axes[ax] != t or len(idx.terms) != 1 or _index_of(idx.terms[0], n) != {LAST: (1, ())} or \
            rows != ["1" if a != n else n for a in data.axes] or not whole:
        ctx.fail("gathers a recurrent output other than at each row's last valid step along its time axis, every "
                 "hidden unit: rnnskip reads out.gather(1, (lengths - 1).view(-1, 1, 1).expand(-1, 1, hidden))")
    return [_last_valid(ctx, data, tuple("1" if a == t else a for a in data.axes))], \
        "converted (each row's last valid step)"


def _gather_flat(ctx: _Ctx, data: Sym, idx: Sym) -> Sym:
    """TorchScript's out[arange(B), lengths - 1]: the output flattened to [batch * time, hidden] (or time-major) and
    gathered at row * time + lengths - 1 (or (lengths - 1) * batch + row)."""
    outer, inner = data.merged
    n = next((ax for ax in data.merged if ctx.r.roles.get(ax) == "N"), "")
    pos = lambda ax: f"pos:{n}" if ax == n else LAST   # noqa: E731
    want = {pos(outer): (1, (inner,)), pos(inner): (1, ())}
    got = _index_of(idx.terms[0], n) if len(idx.terms) == 1 else {}
    size = _input_size(ctx.r, inner)
    if got.get(pos(outer)) == (size, ()) and size:   # a static export's constant offsets: the inner axis's size
        got[pos(outer)] = (1, (inner,))
    if int(ctx.attrs.get("axis", 0)) != 0 or got != want:
        ctx.fail("gathers a flattened recurrent output other than at each row's last valid step: rnnskip reads "
                 "out[arange(batch), lengths - 1]")
    return _last_valid(ctx, data, (n, "F"))


def _static_steps(s: Sym) -> Sym:
    """A constant 0, 1, .., k - 1 along one axis (size-1 axes around it): the positions along a static axis of k
    (label "*k", checked against the axis it meets), as the dynamo exporter writes torch.arange(T)."""
    if s.kind == CONST and np.ndim(s.value) >= 1 and sum(d != 1 for d in np.shape(s.value)) == 1:
        k = max(np.shape(s.value))
        if np.array_equal(np.asarray(s.value).reshape(-1), np.arange(k)):
            lab = f"*{k}"
            return _idx(tuple(lab if d != 1 else "1" for d in np.shape(s.value)), {f"pos:{lab}": (1, ())})
    return s


def h_compare(ctx: _Ctx):
    """arange(T)[None, :] < lengths[:, None] (or lengths[:, None] > arange(T)[None, :]): each row's valid steps."""
    a, b = ctx.inp(0), ctx.inp(1)
    pos, lens = (a, b) if ctx.op == "Less" else (b, a)
    pos = _static_steps(pos)
    terms = dict(pos.terms[0]) if pos.kind == IDX and len(pos.terms) == 1 else {}
    name = next(iter(terms), "")
    if lens.kind != LENS or len(terms) != 1 or not name.startswith("pos:") or terms[name] != (1, ()) or \
            len(pos.axes) != len(lens.axes) or any("1" not in (p, q) for p, q in zip(pos.axes, lens.axes)):
        ctx.fail("compares other values than the steps with the lengths: rnnskip reads a comparison only as each "
                 "row's valid steps, torch.arange(time)[None, :] < lengths[:, None]")
    return [Sym(MASK, axes=tuple(q if p == "1" else p for p, q in zip(pos.axes, lens.axes)))], \
        "folded (each row's valid steps)"


def _time_size(ctx: _Ctx, i: int, k: int) -> Optional[int]:
    dims = ctx.r.dims.get(ctx.node.input[i])
    return dims[k] if dims is not None and isinstance(dims[k], int) else None


def _mask_fits(ctx: _Ctx, data: Sym, mask: Sym, i: int) -> bool:
    """``mask`` lines up with recurrent output ``data`` (input ``i`` of this node): its batch, time and size-1
    feature axes where ``data`` has batch, time and features."""
    n, t = _data_axes(ctx, data)
    if len(mask.axes) != len(data.axes):
        return False
    for k, (d, m) in enumerate(zip(data.axes, mask.axes)):
        static = m.startswith("*") and _time_size(ctx, i, k) == int(m[1:])
        if not ((d == n and m in ("LN", n)) or (d == t and (m == t or static)) or (d == "F" and m == "1")):
            return False
    return True


def _masked(ctx: _Ctx) -> Sym:
    """A recurrent output times each row's valid steps: zeros after each row's length."""
    i = 0 if ctx.inp(0).kind == SEQ else 1
    data, mask = ctx.inp(i), ctx.inp(1 - i)
    if ctx.op != "Mul" or data.kind != SEQ or mask.kind != MASK or not _mask_fits(ctx, data, mask, i):
        ctx.fail("applies each row's valid steps other than as a mask on a recurrent output [batch, time, hidden]: "
                 "rnnskip reads (out * mask.unsqueeze(-1)).sum(1) / lengths, each row's mean over its own steps")
    return Sym(MSEQ, axes=data.axes, width=data.width, layer=data.layer, padded=data.padded)


def _masked_sum(ctx: _Ctx, s: Sym) -> Sym:
    """ReduceSum over time of the masked output (the sum of each row's own steps), or of the mask itself (each
    row's length)."""
    axes = _axes_arg(ctx)
    t = [ax for ax in s.axes if ctx.r.roles.get(ax) == "T" or ax.startswith("*")]
    if axes is None or len(t) != 1 or [s.axes[_norm(a, len(s.axes))] for a in axes] != t:
        ctx.fail(f"sums {s.kind} data over axes {axes}: rnnskip sums a masked recurrent output over its time axis "
                 "alone, for each row's mean over its own steps")
    keep = int(ctx.attrs.get("keepdims", 1))
    out = tuple(("1" if ax == t[0] else ax) for ax in s.axes if keep or ax != t[0])
    if s.kind == MASK:   # each row's length only where the mask spans the input's every step
        if t[0].startswith("*") and _input_steps(ctx.r) != int(t[0][1:]):
            steps = _input_steps(ctx.r)
            ctx.fail(f"sums a mask over {t[0][1:]} steps where the input "
                     f"{f'has {steps}' if steps else 'has no fixed number of steps'}: that is not each row's length; "
                     "rnnskip reads mask.sum(1) of torch.arange(T) with T the input's own steps")
        return Sym(LENS, axes=out)
    return Sym(MSUM, axes=out, width=s.width, layer=s.layer)


def _input_size(r: _Reader, label: str) -> int:
    """The size the graph fixes for the model input's axis ``label`` (a0, a1; 0: not fixed)."""
    i = next(i for i in r.graph.input if r.syms.get(i.name) is not None and r.syms[i.name].kind in (IDS, X))
    dims = i.type.tensor_type.shape.dim
    k = ("a0", "a1").index(label) if label in ("a0", "a1") else None
    return int(dims[k].dim_value) if k is not None and k < len(dims) and dims[k].HasField("dim_value") else 0


def _input_steps(r: _Reader) -> int:
    """The model input's number of steps as the graph fixes it (0: not fixed)."""
    return _input_size(r, next((ax for ax in ("a0", "a1") if r.roles.get(ax) == "T"), ""))


def _masked_mean(ctx: _Ctx) -> Sym:
    """The masked sum divided by the lengths: each row's mean over its own steps, which is what rnnskip's mean over
    time gives when the data's lengths stop each row (Keras' GlobalAveragePooling1D under a mask)."""
    a, b = ctx.inp(0), ctx.inp(1)
    if ctx.op != "Div" or a.kind != MSUM or b.kind != LENS or len(a.axes) != len(b.axes):
        ctx.fail("divides a masked sum by other values than the lengths: rnnskip reads (out * mask).sum(1) / "
                 "lengths, each row's mean over its own steps")
    n = next(ax for ax in a.axes if ctx.r.roles.get(ax) == "N")
    if any(not ((x == n and y in ("LN", n)) or (x in ("F", "1") and y == "1")) for x, y in zip(a.axes, b.axes)):
        ctx.fail("divides a masked sum by the lengths along other axes than the batch: rnnskip reads "
                 "(out * mask).sum(1) / lengths[:, None]")
    _reads_lengths(ctx, ctx.r.rnns[a.layer], "averages each row over its own steps")
    return Sym(STATE, axes=a.axes, width=a.width, layer=a.layer, pooled=("avg", ctx.key))
