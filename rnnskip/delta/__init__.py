"""Delta networks (Neil et al., ICML 2017) for rnnskip.

Every input and hidden unit keeps its last *transmitted* value; at a step a unit
transmits only if it moved by more than a threshold since then, and the layer's
pre-activation sums are kept as running sums ``M += W[:, k] * delta_k`` over the
transmitting columns ``k`` only.

Modules:
    spec           DeltaSpec: per-layer thresholds (int8 grid, cell), delta.json read/write/checks
    golden         DeltaMethod: the integer delta network (the specification of the C code), a
                   step method of the golden model; layouts, statistics, effective MACs
    cellrule       the cell threshold: per-row limits, which units moved (beyond the paper)
    floatdelta     float64 delta network on a ModelIR (the paper's formulation)
    codegen        C generation context: column-major paired weights, the sparse calls
    tune           threshold sweep on validation data, Pareto set, budget pick
    train          delta-aware fine-tuning with tf_keras (retrains; writes a normal Keras model)
    report         report.json ``delta`` section and plots
    convert        --delta inside rnnskip-convert (DeltaSetup)
    cli            the delta-tune and delta-train commands
    kernel_cycles  cycle measurements of the delta kernels
"""
