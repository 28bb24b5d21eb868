"""rnnskip: cheap recurrent-network inference on Arm Cortex-M."""

__version__ = "0.1.0"
