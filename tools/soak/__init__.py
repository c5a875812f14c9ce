"""Fault soak: many real 4-rank training runs, each hit by one fault drawn by a seeded RNG.
A developer command, not part of the installed package. Run from the repository's root:

    PYTHONPATH=. .venv/bin/python -m tools.soak --rounds 50 --seed 0 --out /tmp/hpcsgd-soak
    PYTHONPATH=. .venv/bin/python -m tools.soak --rescore --out /tmp/hpcsgd-soak

Each round launches `mpiexec -n 4 python -m hpcsgd.train` on a small LeNet job (the first
records of data/fashion-mnist) and injects one fault: SIGKILL of a random rank at a random
time after launch, SIGSTOP of a rank (the stall watchdog must end the job, exit 4),
SIGUSR1 / SIGTERM to a rank (stop with a checkpoint, exit 3; the round then resumes with
checkpoint.resume=auto and its loss must equal an uninterrupted reference run's at every
logged step), corrupt records written into the round's copy of the LMDB (counted and
skipped, exit 0), or nothing. The process tree under mpiexec is sampled while the job runs:
after it ends no process of it may survive. One JSON line per round goes to
<out>/rounds.jsonl; the summary table (markdown) is printed and written to <out>/summary.md.
Not part of tools/test.sh: 50 rounds took 34 minutes on the loaded 2-core machine
(docs/reliability.md).

    job.py       the data set, the job file, a watched mpiexec job
    faults.py    the faults and one round
    judge.py     each fault's expected outcome, the judging, the summary table
    __main__.py  the command: the reference run, then the rounds
"""
