"""Core affinity: which cores each rank computes, communicates and decodes on.

Codreanu et al. (IV-E) dedicate cores to communication (KNL: 64 OpenMP compute cores + the
last 4 for ML-SL; dual-socket Skylake 8160: per socket 22 compute threads + 2 communication
servers). Modules: `topology` (sockets, cores, hardware threads, NUMA nodes from sysfs or
lscpu; the papers' nodes as presets), `planner` (the plan: a pure function), `launch`
(matching srun / mpirun binding flags and variables), `openmp` (binding a running OpenMP
team), `apply` (applying the plan inside each rank). Measuring candidate layouts is benchmark code
and lives in hpcsgd/bench/ (`tuner`, `stepbench`). Docs and measurements: docs/affinity.md;
command: `hpcsgd affinity plan|tune|compare` (cli.py). Importing this package does not import
torch (only `apply` does).
"""
