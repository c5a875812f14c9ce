"""Benchmark code shipped with the package, never imported by training: the affinity tuner
(`tuner`: candidate core layouts, each measured by `stepbench`, a short multi-rank step
benchmark, and ranked). Run through `hpcsgd affinity tune` / `compare` (docs/affinity.md).
"""
