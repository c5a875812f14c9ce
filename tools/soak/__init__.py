"""Fault soak: many real 4-rank training runs, each hit by one fault drawn by a seeded RNG.
A developer command, not part of the installed package. Run from the repository's root:

    PYTHONPATH=. .venv/bin/python -m tools.soak --rounds 50 --seed 0 --out /tmp/hpcsgd-soak
    PYTHONPATH=. .venv/bin/python -m tools.soak --rescore --out /tmp/hpcsgd-soak

Each round launches `mpiexec -n 4 python -m hpcsgd.train` on a small LeNet job (the first
records of data/fashion-mnist, a checkpoint every epoch) and injects one fault:

    sigkill   SIGKILL of a random rank at a random time after launch
    sigstop   SIGSTOP of a rank: the stall watchdog must end the job, exit 4
    sigusr1,  the signal to a rank: stop with a checkpoint, exit 3; then
    sigterm   checkpoint.resume=auto, whose loss must equal an uninterrupted reference
              run's at every logged step
    corrupt   damaged records in the round's copy of the LMDB: counted and skipped, exit 0
    ckptkill  SIGKILL of rank 0 while it writes a checkpoint (the write held open by
              HPCSGD_FAULT_CHECKPOINT_DELAY): no torn file; resume=auto continues from the
              checkpoint before it, loss = reference
    truncate  a SIGUSR1 stop, then its checkpoint cut to a random length: resume=auto falls
              back to the one before with a warning naming it (loss = reference), or, with
              none before, refuses naming it
    fulldisk  the run folder on a tmpfs too small for the second checkpoint: the job ends,
              naming the file and the out-of-space error, no temp file, the first one loads
    none      nothing

After every SIGKILL the checkpoint folder is inspected: each step_*.pt must load with
hpcsgd's load_checkpoint and resume=auto must take the newest (a killed writer's temporary
file is recorded, never taken). The process tree under mpiexec is sampled while the job
runs: after it ends no process of it may survive. One JSON line per round goes to
<out>/rounds.jsonl; the summary table (markdown) is printed and written to <out>/summary.md.
Not part of tools/test.sh: 50 rounds took 34 minutes on the loaded 2-core machine
(docs/reliability.md). fulldisk mounts a tmpfs: it needs root (skipped, saying why, without).

    job.py          the data set, the job file, a watched mpiexec job
    faults.py       the injections: damaged records, a signal at the round's moment
    checkpoints.py  the checkpoint folder after a fault; truncation; the small tmpfs
    rounds.py       one round: launch, inject, wait, inspect, resume
    judge.py        each fault's expected outcome, the judging, the summary table
    __main__.py     the command: the reference run, then the rounds
"""
