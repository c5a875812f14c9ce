"""Fuzz the record path a training rank runs on the bytes it reads from an LMDB.

    .venv/bin/python tools/fuzz_records.py --cases 100000 --seed 0

Each case takes a valid record (a raw 28x28 Fashion-MNIST Datum, a raw 3-channel ImageNet
Datum, or an encoded one holding a JPEG or PNG made from data/imagenet-samples), damages it
with one mutation (tools/fuzz_mutations.py) and hands it to the sources' per-record method
(`hpcsgd.data.sources.*Source.sample`: Datum decode, pixel limit, image decode, crop,
resize) in a random mode (train / collapse / eval). The contract: a sample, or
`RecordError` (which the loader counts and skips); never another exception, a crash, a hang,
or unbounded time and memory. Cases run in a child process watched by this one: a case that
kills the child is a "crash", one running longer than --case-limit seconds a "hang", and the
child is restarted after it. Case i depends only on (seed, i): `--replay i` reruns one with
its traceback. Prints the counts per outcome and mutation, the slowest case and the peak RSS;
exits 1 if any case broke the contract.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import random
import resource
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from hpcsgd.config import DataConfig
from hpcsgd.data.sources import ImageNetSource, SmallImageSource
from hpcsgd.data.transforms import MODES
from hpcsgd.store.datum import RecordError, raw_datum
from hpcsgd.store.lmdb_store import LMDBWriter

from fuzz_mutations import MUTATIONS, base_records, mutate

FLUSH_EVERY = 250  # cases between reports to the parent (what a crash makes it rerun)
STARTING = -1      # a child's current case while it imports and builds its records
START_LIMIT_S = 900.0  # for that: minutes on a loaded machine, and not a case's time


def make_sources(folder: Path, max_image_pixels: int):
    """The two real sources a rank builds, on one-record LMDBs (the cases bypass them)."""
    small_cfg = DataConfig(name="fashion-mnist", workers=0)
    big_cfg = DataConfig(name="imagenet", workers=0, crop_size=64, eval_resize=73,
                         max_image_pixels=max_image_pixels)
    for name, datum in (("small", raw_datum(np.zeros((1, 28, 28), np.uint8), 0)),
                        ("imagenet", raw_datum(np.zeros((3, 8, 8), np.uint8), 0))):
        if not (folder / name / "data.mdb").exists():
            with LMDBWriter(folder / name, map_size=1 << 24) as w:
                w.put(datum)
    return {"small": SmallImageSource(small_cfg, folder / "small"),
            "imagenet": ImageNetSource(big_cfg, folder / "imagenet", num_classes=1000)}


def run_case(sources, bases, seed: int, i: int):
    """Case i: (mutation, mode, outcome, error text). Outcome 'valid' or 'corrupt'; any
    other exception propagates (the caller calls it a violation)."""
    rng = random.Random(f"{seed}:{i}")
    kind, datum, raw = bases[rng.randrange(len(bases))]
    name, bad = mutate(rng, kind, datum, raw)
    source = sources["small" if kind == "raw28" else "imagenet"]
    mode = rng.choice(MODES if kind != "raw28" else ("train", "eval"))
    out = np.empty(source.sample_shape, np.uint8)
    try:
        label = source.sample(out, bad, mode=mode, seed_key=(seed, 0), index=i)
    except RecordError as e:
        return name, mode, "corrupt", str(e)
    if not 0 <= label < source.num_classes:  # a sample the loss would index out of range
        raise AssertionError(f"sample with label {label}")
    return name, mode, "valid", ""


def _rss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _child(seed, start, stop, folder, max_pixels, other, current, conn) -> None:
    # Pillow warns of every header over 89 M pixels: thousands of lines, no information
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
    sources = make_sources(Path(folder), max_pixels)
    bases = base_records(random.Random(seed), other_formats=other)
    stats = _Stats()
    for i in range(start, stop):
        current.value = i
        before, t0, c0 = _rss_kb(), time.perf_counter(), time.process_time()
        try:
            name, mode, outcome, why = run_case(sources, bases, seed, i)
        except Exception as e:  # noqa: BLE001: the contract broken; the fuzzer reports it
            name, mode = _describe(seed, i, bases)
            outcome, why = f"violation:{type(e).__name__}", f"{e}"[:200]
        stats.add(i, name, mode, outcome, why, time.perf_counter() - t0,
                  time.process_time() - c0, _rss_kb() - before)
        if (i + 1 - start) % FLUSH_EVERY == 0 or i + 1 == stop:
            conn.send((i + 1, stats))
            stats = _Stats()


def _describe(seed, i, bases):
    rng = random.Random(f"{seed}:{i}")
    kind, datum, raw = bases[rng.randrange(len(bases))]
    name, _ = mutate(rng, kind, datum, raw)
    return name, rng.choice(MODES if kind != "raw28" else ("train", "eval"))


class _Stats:
    def __init__(self):
        self.counts: Counter = Counter()       # (mutation, outcome) -> cases
        self.violations: list[tuple] = []      # (case, mutation, mode, outcome, text)
        self.slowest = (0.0, -1, "")           # (wall seconds, case, mutation)
        self.costliest = (0.0, -1, "")         # (CPU seconds, case, mutation)
        self.cpu: Counter = Counter()          # mutation -> CPU seconds
        self.rss_jump = (0, -1, "")            # (KiB the peak RSS rose, case, mutation)
        self.peak_rss_kb = 0

    def add(self, i, name, mode, outcome, why, seconds, cpu, rss_delta_kb) -> None:
        self.counts[name, outcome.split(":")[0]] += 1
        if outcome not in ("valid", "corrupt"):
            self.violations.append((i, name, mode, outcome, why))
        self.slowest = max(self.slowest, (seconds, i, name))
        self.costliest = max(self.costliest, (cpu, i, name))
        self.cpu[name] += cpu
        self.rss_jump = max(self.rss_jump, (rss_delta_kb, i, name))
        self.peak_rss_kb = max(self.peak_rss_kb, _rss_kb())

    def merge(self, other: "_Stats") -> None:
        self.counts.update(other.counts)
        self.violations += other.violations
        self.slowest = max(self.slowest, other.slowest)
        self.costliest = max(self.costliest, other.costliest)
        self.cpu.update(other.cpu)
        self.rss_jump = max(self.rss_jump, other.rss_jump)
        self.peak_rss_kb = max(self.peak_rss_kb, other.peak_rss_kb)


class _Slot:
    """One child process working through cases [start, stop), watched by the parent."""

    def __init__(self, ctx, start, stop, args):
        self.start, self.stop, self.done = start, stop, start
        self.current = ctx.Value("q", STARTING)
        self.recv, send = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(target=_child, args=(args[0], start, stop, *args[1:],
                                                     self.current, send), daemon=True)
        self.proc.start()
        send.close()
        self.last, self.started = STARTING, time.monotonic()


def fuzz(cases: int, seed: int, *, max_image_pixels: int = 40_000_000, other: bool = False,
         case_limit: float = 60.0, jobs: int = 1, chunk: int = 25_000, log=None) -> _Stats:
    """Run cases [0, cases) in `jobs` watched child processes; returns the merged statistics.
    A child that dies or hangs is replaced: the case it was on is recorded as a crash or a
    hang, the cases it had run since its last report are run again, the rest continue."""
    ctx = mp.get_context("spawn")  # a fresh interpreter: no state shared with the caller
    size = max(1, min(chunk, -(-cases // jobs)))
    todo = [(i, min(cases, i + size)) for i in range(0, cases, size)]
    total, slots = _Stats(), []
    with tempfile.TemporaryDirectory(prefix="hpcsgd-fuzz-") as folder:
        make_sources(Path(folder), max_image_pixels)  # the LMDBs, once, before any child
        args = (seed, folder, max_image_pixels, other)
        while todo or slots:
            while todo and len(slots) < jobs:
                slots.append(_Slot(ctx, *todo.pop(0), args))
            for slot in list(slots):
                alive = slot.proc.is_alive()  # before reading: a child sends, then exits
                while slot.recv.poll(0.1 if alive else 0):
                    try:
                        slot.done, stats = slot.recv.recv()
                    except EOFError:  # the child died: seen below
                        break
                    total.merge(stats)
                    if log:
                        log(f"{slot.done} of [{slot.start}, {slot.stop}) done, "
                            f"{len(total.violations)} violations")
                if slot.done >= slot.stop:
                    slot.proc.join()
                    slots.remove(slot)
                    continue
                if slot.current.value != slot.last:
                    slot.last, slot.started = slot.current.value, time.monotonic()
                limit = START_LIMIT_S if slot.last == STARTING else case_limit
                if not alive or time.monotonic() - slot.started > limit:
                    hang = alive
                    slot.proc.kill()
                    slot.proc.join()
                    bad = slot.current.value
                    if bad == STARTING:
                        raise RuntimeError(f"fuzz child for cases [{slot.start}, {slot.stop}) "
                                           f"failed before its first case (exit "
                                           f"{slot.proc.exitcode}): see its traceback above")
                    total.add(bad, "(see replay)", "?", "hang" if hang else
                              f"crash:exit {slot.proc.exitcode}", "", 0.0, 0.0, 0)
                    todo += [r for r in ((slot.done, bad), (bad + 1, slot.stop)) if r[0] < r[1]]
                    slots.remove(slot)
    return total


def report(stats: _Stats, cases: int, seconds: float) -> str:
    mutations = sorted({m for m, _ in stats.counts})
    outcomes = ("valid", "corrupt", "violation", "crash", "hang")
    lines = [f"{cases} cases in {seconds:.0f} s",
             "| mutation | cases | " + " | ".join(outcomes) + " | mean CPU ms |",
             "|---|---|" + "---|" * (len(outcomes) + 1)]
    for m in mutations:
        row = [stats.counts[m, o] for o in outcomes]
        lines.append(f"| {m} | {sum(row)} | " + " | ".join(map(str, row))
                     + f" | {1000 * stats.cpu[m] / max(sum(row), 1):.2f} |")
    col = [sum(stats.counts[m, o] for m in mutations) for o in outcomes]
    lines.append(f"| all | {sum(col)} | " + " | ".join(map(str, col))
                 + f" | {1000 * sum(stats.cpu.values()) / max(sum(col), 1):.2f} |")
    s, case, name = stats.costliest
    lines.append(f"most CPU in one case: {s * 1000:.0f} ms (case {case}, {name})")
    s, case, name = stats.slowest
    lines.append(f"longest wall time of one case: {s * 1000:.0f} ms (case {case}, {name}; "
                 "the machine was loaded)")
    kb, case, name = stats.rss_jump
    lines.append(f"largest rise of the peak RSS in one case: {kb / 1024:.1f} MiB (case {case}, "
                 f"{name}); peak RSS of a fuzzing process {stats.peak_rss_kb / 1024:.0f} MiB")
    for v in stats.violations[:20]:
        lines.append(f"VIOLATION case {v[0]} ({v[1]}, {v[2]}): {v[3]} {v[4]}")
    return "\n".join(lines)


def replay(seed: int, i: int, max_image_pixels: int, other: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="hpcsgd-fuzz-") as folder:
        sources = make_sources(Path(folder), max_image_pixels)
        bases = base_records(random.Random(seed), other_formats=other)
        try:
            print(run_case(sources, bases, seed, i))
        except Exception:  # noqa: BLE001
            traceback.print_exc()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-image-pixels", type=int, default=DataConfig.max_image_pixels,
                    help="data.max_image_pixels of the ImageNet source (default: the default)")
    ap.add_argument("--case-limit", type=float, default=60.0,
                    help="seconds after which a case counts as a hang")
    ap.add_argument("--other-formats", action="store_true",
                    help="also encoded records in GIF, BMP, WebP, PPM, TGA (other cases then)")
    ap.add_argument("--jobs", type=int, default=1, help="child processes fuzzing at once")
    ap.add_argument("--replay", type=int, default=None, help="rerun one case, with traceback")
    args = ap.parse_args(argv)
    if args.replay is not None:
        replay(args.seed, args.replay, args.max_image_pixels, args.other_formats)
        return 0
    t0 = time.time()
    stats = fuzz(args.cases, args.seed, max_image_pixels=args.max_image_pixels,
                 other=args.other_formats, case_limit=args.case_limit, jobs=args.jobs,
                 log=lambda m: print(m, file=sys.stderr, flush=True))
    print(f"mutations: {', '.join(MUTATIONS)}")
    print(report(stats, args.cases, time.time() - t0))
    return 1 if stats.violations else 0


if __name__ == "__main__":
    sys.exit(main())
