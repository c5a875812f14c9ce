"""The compute side of a rank: threads, layout, precision, compilation, the memory allocator."""
