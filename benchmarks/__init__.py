"""rnnskip benchmarks (``make bench``): reference models trained on the shared
data sets and peer comparisons.  Benchmarks (and tests) may default to
``../shared/data`` relative to the repository root; the product never does."""
