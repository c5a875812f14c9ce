"""One soak round: launch the job, inject the round's fault (tools/soak/faults.py), wait until
every process of the job is gone, look at what it left (the checkpoint folder, /dev/shm),
resume it where the fault calls for that, and record it all in one JSON-able dict, judged
by tools/soak/judge.py."""
from __future__ import annotations

import random
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from hpcsgd.exits import leaked_mpi_segments, mpi_segment_files
from tools.soak.checkpoints import inspect_checkpoints, small_fs, truncate_newest
from tools.soak.faults import OUT_OF_SPACE, SIGNALS, corrupt_copy, inject
from tools.soak.job import END_LIMIT_S, Job, losses, write_job
from tools.soak.judge import judge

CKPT_DELAY_S = 1.5
"""ckptkill: HPCSGD_FAULT_CHECKPOINT_DELAY, how long each checkpoint write stays open."""
FS_SLACK = 64 << 10
"""fulldisk: room beyond the checkpoints for config.toml, metrics.jsonl and the .toml files."""


@dataclass
class Reference:
    """The unfaulted run every round is compared with."""
    losses: dict[int, float]
    wall_s: float
    steps_per_epoch: int
    ckpt_bytes: int
    """Size of one step checkpoint (fulldisk sizes its file system by it)."""


def run_round(i: int, fault: str, rng: random.Random, base: Path, data: Path,
              ref: Reference, epochs: float) -> dict:
    folder = base / f"round_{i:03d}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    rec = {"round": i, "fault": fault, "rank": None, "injected_s": None, "step": None}
    if fault == "corrupt":
        count = rng.randint(1, 3)
        rec["keys"] = corrupt_copy(data, folder / "data", rng, count)
        data = folder / "data"
    write_job(folder, data, epochs)
    total, spe = max(ref.losses), ref.steps_per_epoch
    rank = rng.randrange(4)
    delay = rng.uniform(0.5, 0.9 * ref.wall_s)     # sigkill: any time after launch
    at_step = rng.randint(2, total - 4)             # the others: once training runs
    saves = list(range(spe, total, spe))            # the periodic checkpoints' steps
    ckpt_step = rng.choice(saves) if fault == "ckptkill" else saves[1]
    # fulldisk: room for one checkpoint and a random part of the next (saves[1]'s)
    fs_bytes = ref.ckpt_bytes + int(rng.uniform(0.2, 0.8) * ref.ckpt_bytes) + FS_SLACK
    env = {"HPCSGD_FAULT_CHECKPOINT_DELAY": str(CKPT_DELAY_S)} if fault == "ckptkill" else {}
    shm_before = mpi_segment_files()
    with small_fs(folder / "runs", fs_bytes) if fault == "fulldisk" else nullcontext((0, 0)) \
            as (mounted, refused):
        if fault == "fulldisk":
            rec.update(fs_bytes=fs_bytes, ckpt_step=ckpt_step)
            if mounted is None:
                rec.update(skipped=f"cannot mount a tmpfs: {refused}", exit=None, survivors=[])
                judge(rec, "")
                return rec
        job = Job(folder, env=env)
        hit = inject(job, fault, rank=rank, delay=delay, at_step=at_step, ckpt_step=ckpt_step) \
            if fault in SIGNALS or fault == "fulldisk" else None
        if hit:
            rec.update(rank=hit["rank"], pid=hit["pid"], step=hit["step"],
                       injected_s=round(hit["time"] - job.t0, 2))
        code, gone, survivors = job.wait_gone(END_LIMIT_S + hit["time"] - time.time()
                                              if hit else 30 * ref.wall_s)
        output = job.output()
        _record_shm(rec, shm_before)
        rec.update(exit=code, survivors=survivors, processes=len(job.tree),
                   end_s=round(gone - hit["time"], 2) if hit else None,
                   wall_s=round(gone - job.t0, 2),
                   missed=fault not in ("none", "corrupt") and hit is None)
        ckpts = job.run_dir / "checkpoints"
        if fault in ("sigkill", "ckptkill", "fulldisk"):  # what the dead writer left
            rec["checkpoints"] = inspect_checkpoints(ckpts)
        if fault == "fulldisk":
            rec["names_error"] = f"step_{ckpt_step:08d}.pt" in output and OUT_OF_SPACE in output
            shutil.copytree(job.run_dir, folder / "run_on_full_disk", dirs_exist_ok=True)
    if fault == "none":
        rec["loss_equal"] = losses(job) == ref.losses
    elif fault == "corrupt":
        final = job.metrics("summary")
        rec["corrupt_counted"] = final[-1].get("corrupt_records") if final else None
    elif fault in ("sigusr1", "sigterm", "truncate"):
        stopped = job.metrics("stopped")
        rec["stopped_step"] = stopped[-1]["step"] if stopped else None
        if fault == "truncate" and code == 3:
            cut = truncate_newest(ckpts, rng)
            # as the run names them (relative to its folder): what its warning must say
            for key in ("truncated", "previous"):
                cut[key] = cut[key] and str(Path(cut[key]).relative_to(folder))
            rec.update(cut)
        _resume(rec, folder, ref)
    elif fault == "ckptkill":
        rec["killed_file_exists"] = (ckpts / f"step_{ckpt_step:08d}.pt").exists()
        # the checkpoint before the killed one, or none (a fresh start) for the first
        rec["ckpt_step"], rec["expected_from"] = ckpt_step, ckpt_step - spe
        _resume(rec, folder, ref)
        # the killed writer's temporary file: removed by the resumed run's first save
        rec["stray_after_resume"] = inspect_checkpoints(ckpts)["stray_tmp"]
    judge(rec, output)
    job.log.close()
    return rec


def _record_shm(rec: dict, before: set) -> None:
    leaked = leaked_mpi_segments(before)
    rec["shm_leaked_bytes"] = sum(p.stat().st_size for p in leaked)
    for p in leaked:  # garbage once unmapped; removed so that 50 rounds do not fill /dev/shm
        p.unlink(missing_ok=True)


def _resume(rec: dict, folder: Path, ref: Reference) -> None:
    """checkpoint.resume = "auto" to the end: where it started, and whether every logged
    loss equals the reference run's (the resumed run's later values win for its steps)."""
    resumed = Job(folder, "--checkpoint.resume=auto")
    rcode, _, rsurv = resumed.wait_gone(30 * ref.wall_s)
    starts = resumed.metrics("start")
    output = resumed.output()
    rec.update(resume_exit=rcode, resume_survivors=rsurv,
               resumed_from=starts[-1]["step"] if starts and rcode == 0 else None,
               resumed_from_path=starts[-1]["resumed_from"] if starts and rcode == 0 else None)
    if rec.get("truncated"):
        damaged = rec["truncated"]
        rec["warned"] = f"checkpoint {damaged!r}" in output and "passed over" in output
        rec["refusal_names_it"] = Path(damaged).name in output and "no checkpoint in" in output
        kept = folder / damaged
        rec["kept"] = kept.exists() and kept.stat().st_size == rec["cut_to"]
    got = losses(resumed)
    rec["loss_equal"] = got == ref.losses
    if got != ref.losses:
        rec["loss_diff_steps"] = sorted(s for s in ref.losses
                                        if got.get(s) != ref.losses[s])[:10]
    resumed.log.close()
