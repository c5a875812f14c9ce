"""tools/soak/judge.py's judging of a round, on output lines copied from the committed
50-round soak (docs/reliability.md): what counts as naming the faulty rank, and each fault's
outcome."""
from tools.soak import judge as soak

WATCHDOG = ("[hpcsgd watchdog] rank 0: collective #9 (step 8 bucket 1/1 (1.6 MiB)) has not "
            "completed after 10.0 s; ranks that have not arrived: []; ranks not responding "
            "(dead or stuck inside MPI): [3]\n  aborting all 4 ranks\n")
WATCH = ("[hpcsgd] rank 0: the train log's allgather at step 9 unfinished after 5 s "
         "(comm.stall_timeout_s): another rank never reached it or died; ending all 4 ranks "
         "with exit 4\n")
HYDRA = ("=   BAD TERMINATION OF ONE OF YOUR APPLICATION PROCESSES\n=   PID 17414 RUNNING AT vm\n"
         "=   EXIT CODE: 9\n")


def _round(fault, **fields):
    rec = {"fault": fault, "rank": 3, "pid": 17415, "injected_s": 2.0, "exit": 4,
           "survivors": []}
    rec.update(fields)
    return rec


def test_a_stall_names_the_rank_only_in_the_watchdogs_lists():
    assert soak.named("sigstop", 3, 1, WATCHDOG)
    assert not soak.named("sigstop", 2, 1, WATCHDOG)
    assert not soak.named("sigstop", 0, 1, WATCH)  # "rank 0:" is the reporter, not a culprit
    assert soak.stalled_collective(WATCHDOG) == "step 8 bucket 1/1 (1.6 MiB)"
    assert soak.stalled_collective(WATCH) == "the train log's allgather at step 9"


def test_hydra_names_a_pid_which_may_not_be_the_killed_one():
    assert soak.named("sigkill", 1, 17414, HYDRA)
    assert not soak.named("sigkill", 1, 17415, HYDRA)


def test_outcomes():
    rec = _round("sigstop")
    soak.judge(rec, WATCH)
    assert rec["ok"] and not rec["named"]  # ended with the stall code: met, though unnamed
    rec = _round("sigstop", survivors=[1234])
    soak.judge(rec, WATCHDOG)
    assert not rec["ok"] and "stderr_tail" in rec  # a process outlived the job
    rec = _round("sigusr1", exit=3, resume_exit=0, resume_survivors=[], loss_equal=True,
                 stopped_step=36, resumed_from=36)
    soak.judge(rec, "stopped by SIGUSR1 at step 36: checkpoint written, exit 3 (requeue)\n")
    assert rec["ok"] and rec["named"]
    rec["resumed_from"] = 32  # resumed from an older checkpoint: not the agreed stop step
    soak.judge(rec, "")
    assert not rec["ok"]
    rec = _round("corrupt", exit=0, injected_s=None, corrupt_counted=3, keys=["00000300"])
    soak.judge(rec, "train: bad record '00000300' (field 4 claims 784 bytes, 692 remain)\n")
    assert rec["ok"] and rec["named"]


SOUND = {"files": ["step_00000016.pt"], "torn": [], "stray_tmp": [".step_00000032.pt.tmp9"],
         "newest_loads": True, "auto_choice": "step_00000016.pt"}


def test_a_kill_must_leave_no_torn_checkpoint_and_auto_must_take_the_newest():
    rec = _round("sigkill", exit=9, checkpoints=SOUND)
    soak.judge(rec, HYDRA)
    assert rec["ok"]  # a stray temporary file is recorded, but not taken for a checkpoint
    rec = _round("sigkill", exit=9, checkpoints={**SOUND, "torn": ["step_00000016.pt"],
                                                 "newest_loads": False, "auto_choice": None})
    soak.judge(rec, HYDRA)
    assert not rec["ok"]
    rec = _round("sigkill", exit=9, checkpoints={**SOUND, "files": [".step_00000032.pt.tmp9",
                                                                     "step_00000016.pt"]})
    soak.judge(rec, HYDRA)
    assert not rec["ok"]  # resume=auto would skip the file its listing calls the newest
    rec = _round("sigkill", exit=9)  # a soak from before the checkpoint faults: not inspected
    soak.judge(rec, HYDRA)
    assert rec["ok"]


def _ckptkill(**fields):
    return _round("ckptkill", **{
        "exit": 9, "checkpoints": SOUND, "killed_file_exists": False, "ckpt_step": 32,
        "expected_from": 16, "resume_exit": 0, "resume_survivors": [], "resumed_from": 16,
        "resumed_from_path": "runs/run/checkpoints/step_00000016.pt", "loss_equal": True,
        **fields})


def test_ckptkill_outcome():
    rec = _ckptkill()
    soak.judge(rec, "")
    assert rec["ok"]
    for bad in ({"killed_file_exists": True}, {"resumed_from": 0}, {"loss_equal": False},
                {"exit": 0}, {"resume_exit": 4},
                {"stray_after_resume": [".step_00000032.pt.tmp9"]}):
        rec = _ckptkill(**bad)
        soak.judge(rec, "")
        assert not rec["ok"], bad


def _truncate(**fields):
    older = "runs/run/checkpoints/step_00000016.pt"
    return _round("truncate", **{
        "exit": 3, "stopped_step": 27, "truncated": "x/step_00000027.pt", "size": 3_500_000,
        "cut_to": 1000, "previous": older, "kept": True, "warned": True,
        "refusal_names_it": False, "resume_exit": 0, "resume_survivors": [],
        "resumed_from": 16, "resumed_from_path": older, "loss_equal": True, **fields})


def test_truncate_falls_back_with_a_warning_or_refuses_by_name():
    rec = _truncate()
    soak.judge(rec, "stopped by SIGUSR1 at step 27")
    assert rec["ok"] and rec["named"]
    for bad in ({"warned": False}, {"kept": False}, {"resumed_from_path": None},
                {"loss_equal": False}):
        rec = _truncate(**bad)
        soak.judge(rec, "")
        assert not rec["ok"], bad
    # stopped before the first periodic checkpoint: nothing older, so the resume refuses
    rec = _truncate(previous=None, warned=False, refusal_names_it=True, resume_exit=2,
                    loss_equal=False, resumed_from=None, resumed_from_path=None)
    soak.judge(rec, "")
    assert rec["ok"] and rec["named"]
    rec["resume_exit"] = 0  # started afresh over a damaged checkpoint without a word
    soak.judge(rec, "")
    assert not rec["ok"]


def test_fulldisk_outcome():
    view = {**SOUND, "stray_tmp": []}
    rec = _round("fulldisk", exit=1, rank=None, pid=None, end_s=1.2, checkpoints=view,
                 names_error=True)
    soak.judge(rec, "")
    assert rec["ok"] and rec["named"]
    for bad in ({"end_s": 30.0}, {"exit": 0}, {"checkpoints": SOUND},
                {"checkpoints": {**view, "files": [], "auto_choice": None}}):
        rec2 = {**rec, **bad}
        soak.judge(rec2, "")
        assert not rec2["ok"], bad
    rec = _round("fulldisk", exit=None, injected_s=None, skipped="cannot mount a tmpfs")
    soak.judge(rec, "")
    assert rec["ok"] and "skipped" in soak.summary_table([rec])
