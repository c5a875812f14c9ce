"""hpcsgd: synchronous data-parallel SGD for CNNs on CPU clusters (README.md)."""
# A training entry point preloads its memory allocator and re-executes itself once, here,
# before MPI and any thread start (hpcsgd/cpu/allocator.py); anything else is untouched.
from hpcsgd.cpu.allocator import reexec_with_allocator as _reexec_with_allocator

_reexec_with_allocator()
