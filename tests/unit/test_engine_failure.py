"""Issue 19, defect 4: after one job fails on the communication thread, no later job runs.

The node barriers of the hierarchical allreduce count arrivals only: a rank whose thread went
on with the next bucket after a failed one would let the node's other ranks finish a bucket
that nobody summed. The engine must refuse every later job (queued or submitted), naming the
job that failed first. A real CommEngine thread; the failing job is a plain function.
"""
import threading

import pytest

from hpcsgd.comm.engine import CommEngine


def test_after_a_failed_job_no_later_job_runs_and_the_first_failure_is_named():
    engine = CommEngine()
    try:
        release = threading.Event()
        ran = []

        def fail_after_release():
            release.wait(10)
            raise ValueError("node barrier broken")

        first = engine.submit(fail_after_release, label="step 3 bucket 1/2 (0.1 MiB)")
        # queued behind the failing job before it fails: must not run either
        queued = engine.submit(ran.append, "queued", label="step 3 bucket 2/2 (0.1 MiB)")
        release.set()
        with pytest.raises(RuntimeError, match="'step 3 bucket 1/2.*node barrier broken"):
            first.wait()
        with pytest.raises(RuntimeError, match="not run.*'step 3 bucket 1/2 \\(0.1 MiB\\)' "
                                               "failed.*node barrier broken"):
            queued.wait()
        # submitted after the failure: refused at the submit, naming the first failed job
        with pytest.raises(RuntimeError, match="'step 4 bucket 1/2'.*refused.*'step 3 bucket "
                                               "1/2 \\(0.1 MiB\\)' failed.*ValueError"):
            engine.submit(ran.append, "later", label="step 4 bucket 1/2")
        assert ran == []
        assert engine.failure is not None and engine.failure[0] == "step 3 bucket 1/2 (0.1 MiB)"
    finally:
        engine.close(timeout=10)
    assert not engine._thread.is_alive()  # close() still stops a failed engine
