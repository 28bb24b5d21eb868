"""Calibration, int8 quantization and the integer golden model (the C code's specification)."""
