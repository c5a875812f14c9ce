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
