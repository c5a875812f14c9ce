"""Scaling model: predicted iteration time, time per epoch and time to train at cluster scale.

Pure numpy/maths (no torch, no MPI), so it runs anywhere. One concern per module:
- allreduce.py: alpha-beta-gamma costs of ring, halving-doubling and hierarchical allreduce;
- hardware.py: node types, networks and training stacks as data, each value with its source;
- model.py: iteration time = compute + exposed communication + scale-out + update + data;
- paper.py: Codreanu et al. (2017)'s published tables;
- calibration.py: which published rows set which parameters;
- jobs.py: time to train from parameters or a jobs/*.toml file;
- projection.py: what hpcsgd would need per node to match the paper at 256-1536 nodes;
- report.py, document.py: predicted versus published, and docs/scaling.md.
The command-line entry point is hpcsgd/scaling/cli.py (`hpcsgd scaling report|time-to-train`);
plots.py draws the report's two figures.
"""
