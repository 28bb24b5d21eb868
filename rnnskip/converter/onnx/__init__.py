"""Read an ONNX file (what ``torch.onnx.export`` writes) into the rnnskip IR.

One handler per ONNX op type, registered in :data:`HANDLERS`; an op type without one is
refused in one line naming the node, its op type and what is supported.

The graph is read by symbolic evaluation in node order (ONNX keeps nodes topologically
sorted): every tensor becomes a :class:`Sym` saying *what it is* — a constant, a value
derived only from input shapes, all zeros, the token ids, the per-step vectors entering
the first recurrent layer, a recurrent layer's output sequence or final state, a head
vector — and, for data tensors, which axis is which. Axes of the model input are
labelled ``a0``, ``a1`` until a recurrent op's ``layout`` says which one is time and which
is batch; ``Transpose``/``Squeeze``/``Unsqueeze`` move labels around, so the glue PyTorch
emits (batch_first transposes, the squeezed direction axis, ``Shape``-driven zero initial
states, the last step taken by ``Gather``/``Slice``) folds away and whatever does not fit
is refused where it stands. A ``Conv``/``MaxPool``/``AveragePool`` on the input's
``[batch, channels, time]`` fixes those roles itself and becomes a layer of the streamed front
end (the IR's ``ConvLayer``/``PoolLayer``, as Keras' Conv1D): its output frames get a time axis
of their own, since a stride or valid padding changes the length.

Weights are converted to Keras layout (the IR's) with what each cell kind of ``rnnskip/cells/``
says about its ONNX operator (``onnx_op``, ``onnx_gate_order``, ``onnx_activations``,
``from_onnx``): ONNX ``W [1, G*H, I]`` in the operator's gate order (LSTM i-o-f-c, GRU z-r-h)
-> ``kernel [I, G*H]`` in Keras order (i-f-c-o, z-r-h); the bias halves ``[Wb | Rb]`` are
summed, except for a GRU with ``linear_before_reset=1`` (PyTorch's), which is Keras'
``reset_after=True`` and keeps both as ``[2, 3H]``. Nothing here names a cell kind.
"""
from rnnskip.converter.onnx.loader import describe_onnx_file, load_onnx_file, parse_onnx_file

__all__ = ["describe_onnx_file", "load_onnx_file", "parse_onnx_file"]
