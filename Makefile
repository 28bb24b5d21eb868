# rnnskip: every target works as the first command on a fresh machine.
PY      := .venv/bin/python
PIP     := .venv/bin/pip
STAMP   := .venv/.rnnskip-installed
APT_PKGS := gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm cmake make gcc clang
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup toolchain demo lint test bench clean

setup: toolchain $(STAMP)

# Debian's cross toolchain; installed only when missing (idempotent).
toolchain:
	@if ! command -v arm-none-eabi-gcc >/dev/null 2>&1 || \
	    ! [ -f /usr/lib/arm-none-eabi/newlib/libc.a ] || \
	    ! command -v qemu-system-arm >/dev/null 2>&1 || \
	    ! command -v cmake >/dev/null 2>&1 || \
	    ! command -v gcc >/dev/null 2>&1 || \
	    ! command -v clang >/dev/null 2>&1; then \
	  echo "installing $(APT_PKGS)"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(APT_PKGS) >/dev/null; \
	fi

$(STAMP): setup.cfg pyproject.toml
	@[ -x $(PY) ] || python3 -m venv .venv
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[keras,train,bench,onnx,torch,test,lint]'
	@touch $(STAMP)

demo: setup
	$(PY) examples/demo.py --out build/demo

# ruff on the Python; clang-format on the kernels, the cell kernels and the C the generator writes
lint: setup
	$(PY) tools/lint.py

# one pytest worker per core, at most 4 (each may load TensorFlow); a test file stays on one worker, so its
# module and session fixtures (the Keras corpus) are built once. TEST_JOBS=0 runs them in make's own process.
TEST_JOBS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); [ $$n -gt 4 ] && n=4; echo $$n)
test: setup
	$(PY) -m pytest -q -n $(TEST_JOBS) --dist loadfile tests

bench: setup
	$(PY) -m benchmarks.run_all

clean:
	rm -rf build bench_out .pytest_cache
