"""Benchmark footers name the code and the environment that produced the numbers."""
import numpy as np

from benchmarks.common import versions
from benchmarks.run_all import provenance


def test_versions_are_the_installed_ones():
    v = versions()
    assert v["numpy"] == np.__version__
    assert v["python"].count(".") == 2


def test_provenance_names_commit_and_packages():
    p = provenance()
    assert p.startswith("commit ")
    assert f"numpy {np.__version__}" in p
