"""The flow from a Keras file to a report: import -> IR -> quantize -> generate -> build ->
emulate -> report. Data flows one way.

* :mod:`.stages`: each stage as a function on in-memory objects (import_model,
  quantize_model, build_firmware, evaluate, dense_reference), re-exported here;
* :mod:`.workdir`: the work folder the stage commands share (plain-data stage files,
  the build record, stages.json with content hashes);
* :mod:`.commands`: the bodies of the ``rnnskip`` stage commands (import, quantize,
  generate, build, emulate, report);
* :mod:`.convert`: ``run_convert``, the whole flow of ``rnnskip-convert``.

The command line (rnnskip.cli) only parses options, calls one of these and prints.
"""
from ..build import build_host, build_target
from .stages import (
                     Evaluation,
                     Reference,
                     build_firmware,
                     check_kernels,
                     dense_reference,
                     device_sequences,
                     evaluate,
                     float_model,
                     import_model,
                     kernel_variant,
                     load_data,
                     quantize_model,
)

__all__ = ["Evaluation", "Reference", "build_firmware", "build_host", "build_target", "check_kernels",
           "dense_reference", "device_sequences", "evaluate", "float_model", "import_model", "kernel_variant",
           "load_data", "quantize_model"]
