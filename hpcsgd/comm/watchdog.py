"""Stall watchdog: a collective that has not completed after `timeout_s` names the ranks that
have not arrived, then ends the whole job (no silent hang).

Each rank runs one light thread that polls (every `period_s`, no busy-wait) a side channel: a
communicator of its own (``comm.Dup()``), so its small messages never mix with the gradient
traffic. The thread
- answers QUERY messages with this rank's progress (sequence number of the last collective
  entered, its label, whether it is still in flight and for how long; engine.Progress);
- obeys ABORT messages from another rank's watchdog (so a job ends even under a launcher that
  does not kill the other processes when one exits);
- and when this rank's own collective has been in flight for longer than `timeout_s`, asks
  every rank for its progress, waits at most `grace_s` for the answers, prints the report
  (ranks that have not arrived, ranks that do not answer at all) and aborts the job.

A rank that is stuck in its computation still answers (its watchdog thread runs); a dead
rank does not answer and is reported as not responding. If the MPI library itself stops
responding to the side channel, a plain timer ends the process after `grace_s` + 5 s.
"""
from __future__ import annotations

import atexit
import os
import sys
import threading
import time
import weakref

from hpcsgd.mpi_start import MPI

from hpcsgd.comm.engine import Progress, pin_current_thread
from hpcsgd.exits import EXIT_STALL
from hpcsgd.exits import abort_job

TAG_QUERY, TAG_REPLY, TAG_ABORT = 71, 72, 73


def stall_report(rank: int, size: int, seq: int, label: str, age_s: float,
                 replies: dict[int, tuple]) -> tuple[str, list[int], list[int]]:
    """The watchdog's message for collective `seq` stuck on `rank` for `age_s` seconds.

    replies: rank -> (entered, label, busy, age_s) from every rank that answered.
    Returns (text, ranks that have not arrived at `seq`, ranks that did not answer)."""
    lagging = sorted(r for r, (entered, *_rest) in replies.items() if entered < seq)
    silent = sorted(set(range(size)) - set(replies) - {rank})
    lines = [f"[hpcsgd watchdog] rank {rank}: collective #{seq} ({label}) has not completed "
             f"after {age_s:.1f} s; ranks that have not arrived: {lagging}; "
             f"ranks not responding (dead or stuck inside MPI): {silent}"]
    for r in lagging:
        entered, last, busy, age = replies[r]
        state = "in flight" if busy else "finished"
        lines.append(f"  rank {r}: last collective entered #{entered} ({last}), {state} "
                     f"{age:.1f} s ago")
    others = {replies[r][1] for r in replies if replies[r][0] == seq}
    if others - {label}:
        lines.append(f"  ranks disagree on collective #{seq}: {sorted(others | {label})} "
                     "(buckets or steps differ between ranks, or a rank skipped one)")
        for r in sorted(replies):  # at this collective's number, but in another collective
            entered, last, busy, age = replies[r]
            if entered == seq and last != label:
                lines.append(f"  rank {r}: in #{seq} ({last}) instead, "
                             f"{'in flight' if busy else 'finished'} {age:.1f} s ago")
    lines.append(f"  aborting all {size} ranks")
    return "\n".join(lines), lagging, silent


class Watchdog:
    def __init__(self, comm: MPI.Comm, progress: Progress, *, timeout_s: float,
                 grace_s: float = 5.0, period_s: float = 0.1, cores: list[int] | None = None,
                 abort=None, out=None):
        """comm: the job's communicator (duplicated here; collective). progress: what this
        rank's collectives do (engine.Progress). abort(code, text): ends the job once the
        report is printed (default: MPI_Abort on `comm`); tests inject a recorder."""
        self.comm = comm.Dup()
        self.rank, self.size = self.comm.rank, self.comm.size
        self.progress = progress
        self.timeout_s, self.grace_s, self.period_s = timeout_s, grace_s, period_s
        self._world = comm
        self._abort_fn = abort or self._mpi_abort
        self._out = out or sys.stderr
        self._cores = list(cores or [])
        self._stop = threading.Event()
        self._aborted = threading.Event()
        self._defer_until = 0.0
        self._sends: list[MPI.Request] = []  # pending isends keep their pickled buffers alive
        # messages sent to / received from each rank, so that close() can drain the side
        # channel: a communicator freed with messages still queued hands them to the next
        # communicator that reuses its context id (seen as "Message truncated" in a later
        # collective of the test suite after an injected abort)
        self._sent = [0] * self.size
        self._received = [0] * self.size
        self.report: str | None = None
        self._thread = threading.Thread(target=self._run, name="hpcsgd-watchdog", daemon=True)
        self._thread.start()
        _live.add(self)

    # --------------------------------------------------------------------- the thread

    def _run(self) -> None:
        pin_current_thread(self._cores)
        while not self._stop.is_set() and not self._aborted.is_set():
            self._serve()
            seq, label, busy, since = self.progress.state
            age = time.monotonic() - since
            if busy and self.timeout_s > 0 and age > self.timeout_s \
                    and time.monotonic() > self._defer_until:
                self._diagnose(seq, label, age)
            self._stop.wait(self.period_s)

    def _serve(self, replies: dict | None = None) -> None:
        """Handle every pending side-channel message (non-blocking)."""
        status = MPI.Status()
        while not self._aborted.is_set() and \
                self.comm.iprobe(MPI.ANY_SOURCE, MPI.ANY_TAG, status):
            source, tag = status.source, status.tag
            msg = self.comm.recv(source=source, tag=tag)
            self._received[source] += 1
            if tag == TAG_QUERY:
                seq, label, busy, since = self.progress.state
                self._send((seq, label, busy, time.monotonic() - since), source, TAG_REPLY)
                if busy and seq >= msg:
                    # another rank is reporting this stall: let it, and wait for its ABORT
                    self._defer_until = time.monotonic() + 2 * self.grace_s + 1.0
            elif tag == TAG_REPLY and replies is not None:
                replies[source] = msg
            elif tag == TAG_ABORT:  # silent: the reporting rank has printed the report
                self._end(f"[hpcsgd watchdog] rank {self.rank}: ending: {msg}")

    def _send(self, msg, dest: int, tag: int) -> None:
        self._sends = [r for r in self._sends if not r.Test()]
        self._sends.append(self.comm.isend(msg, dest, tag))
        self._sent[dest] += 1

    def _diagnose(self, seq: int, label: str, age: float) -> None:
        # if even the side channel blocks (the library is wedged), still end this process
        deadman = threading.Timer(self.grace_s + 5.0, self._deadman, args=(seq, label))
        deadman.daemon = True
        deadman.start()
        for r in range(self.size):
            if r != self.rank:
                self._send(seq, r, TAG_QUERY)
        replies: dict[int, tuple] = {}
        deadline = time.monotonic() + self.grace_s
        while len(replies) < self.size - 1 and time.monotonic() < deadline \
                and not self._aborted.is_set():
            self._serve(replies)
            time.sleep(0.02)
        if self._aborted.is_set() or self.progress.state[:3] != (seq, label, True):
            deadman.cancel()  # another rank's watchdog ended the job, or it completed late
            return
        text, lagging, silent = stall_report(self.rank, self.size, seq, label,
                                             time.monotonic() - self.progress.state[3],
                                             replies)
        self._write(text)  # before any notice: a notified rank may end the job at once
        notice = (f"rank {self.rank}'s watchdog: collective #{seq} ({label}) stalled; "
                  f"not arrived: {lagging}, not responding: {silent}")
        for r in range(self.size):
            if r != self.rank and r not in silent:
                self._send(notice, r, TAG_ABORT)
        time.sleep(0.3)  # let the notices leave before the job is torn down
        deadman.cancel()
        self._end(text)

    def _end(self, text: str) -> None:
        if self._aborted.is_set():
            return
        self._aborted.set()
        self.report = text
        self._abort_fn(EXIT_STALL, text)

    def _write(self, text: str) -> None:
        self._out.write(text + "\n")
        self._out.flush()

    def _mpi_abort(self, code: int, text: str) -> None:
        abort_job(self._world, code)

    def _deadman(self, seq: int, label: str) -> None:
        # not when the job is ending anyway, or the collective completed late after all (the
        # diagnosis may have died on an MPI error without cancelling this timer)
        if self._aborted.is_set() or self.progress.state[:3] != (seq, label, True):
            return
        self._write(f"[hpcsgd watchdog] rank {self.rank}: collective #{seq} ({label}) stalled "
                    "and MPI does not answer on the side channel; exiting")
        os._exit(EXIT_STALL)

    # --------------------------------------------------------------------- control

    @property
    def aborted(self) -> bool:
        return self._aborted.is_set()

    def close(self) -> None:
        """Stop the thread (collective: frees the side-channel communicator).

        Before the free, every message any rank's watchdog sent on the side channel is
        received (the counts are exchanged) and every send of this rank has completed."""
        self._stop.set()
        self._thread.join()
        _live.discard(self)
        expected = self.comm.alltoall(self._sent)  # expected[r]: what rank r sent to me
        for source, count in enumerate(expected):
            while self._received[source] < count:
                self.comm.recv(source=source)  # a late query, reply or notice: dropped
                self._received[source] += 1
        MPI.Request.Waitall(self._sends)
        self._sends.clear()
        self.comm.Free()


_live: "weakref.WeakSet[Watchdog]" = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    # before MPI_Finalize (mpi4py's finalizer was registered earlier, so runs later)
    for wd in list(_live):
        wd._stop.set()
        wd._thread.join(2.0)
