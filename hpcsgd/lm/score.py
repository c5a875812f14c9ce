"""The NLL of a language-model checkpoint on its evaluation split, sentence by sentence.

    mpiexec -n 4 .venv/bin/python -m hpcsgd.lm.score CONFIG.toml [--section.key=value ...] \
        --snapshot final.pt [--report test_eval.json]

The evaluation is the trainer's (hpcsgd/lm/evaluate.py: lm.eval_split, lm.eval_streams, the
same perplexity), with each target's NLL kept and summed per sentence (a sentence ends with
its <eos>). Two models scored on the same text are compared sentence by sentence: the
difference of their perplexities is known far more precisely from the paired sentences than
from the two numbers alone, and the text's own sampling noise can be counted (the LSTM claim
of tools/experiments). The report (JSON) goes to the run folder.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from hpcsgd import config as config_mod
from hpcsgd.cpu.compute import compute_threads
from hpcsgd.lm.corpus import EOS, CorpusError, load_corpus
from hpcsgd.lm.evaluate import evaluate_perplexity
from hpcsgd.lm.train import build_lm
from hpcsgd.run.checkpoint import CheckpointError, atomic_write_bytes, load_checkpoint
from hpcsgd.run.entry import evaluation_entry, report_file
from hpcsgd.run.world import agree, run_or_abort


def sentence_nll(target_nll: np.ndarray, targets: np.ndarray, eos: int) -> np.ndarray:
    """The NLL summed over each sentence's targets, in text order: a sentence ends with a
    target that is `eos`; targets after the last eos make a sentence of their own."""
    target_nll, targets = np.asarray(target_nll, float), np.asarray(targets)
    if target_nll.shape != targets.shape:
        raise ValueError(f"{len(target_nll)} NLLs for {len(targets)} targets")
    starts = np.concatenate([[0], np.flatnonzero(targets[:-1] == eos) + 1])
    return np.add.reduceat(target_nll, starts)


def load_data(cfg: config_mod.Config) -> tuple[int, np.ndarray, int]:
    """(vocabulary size, ids of lm.eval_split, the id of <eos>)."""
    vocab, ids = load_corpus(cfg.lm.corpus, cfg.lm.vocab_size, (cfg.lm.eval_split,))
    return len(vocab), ids[cfg.lm.eval_split], vocab[EOS]


def score(cfg: config_mod.Config, world, data: tuple[int, np.ndarray, int], path: Path,
          report_name: str = "test_eval.json") -> dict:
    """Evaluate the checkpoint at `path` on (vocab size, eval ids, eos id); rank 0 writes the
    report {"path", "split", "perplexity", "nll", "count", "sentence_nll"} to the run folder."""
    torch.set_num_threads(compute_threads(cfg.compute, world.local_size))
    world.watch.start(cfg.comm.stall_timeout_s)  # no collective waits for ever (collective)
    vocab, ids, eos = data
    state = agree(world, lambda: load_checkpoint(path), CheckpointError, what=f"loading {path}")
    model = build_lm(cfg, vocab)
    model.load_state_dict(state["model"])
    result = evaluate_perplexity(model, ids, world, num_streams=cfg.lm.eval_streams,
                                 seq_len=cfg.lm.seq_len, per_target=True)
    sentences = sentence_nll(result.pop("target_nll"), ids[1:], eos)
    report = {"path": str(path), "split": cfg.lm.eval_split, **result,
              "sentence_nll": [round(x, 5) for x in sentences.tolist()]}
    if world.is_root:
        print(f"{Path(path).name}: {cfg.lm.eval_split} perplexity {result['perplexity']:.2f} "
              f"({result['count']} targets, {len(sentences)} sentences)")
        cfg.run_dir.mkdir(parents=True, exist_ok=True)
        # whole or not at all: a half-written report would read as a finished, broken one
        text = json.dumps(report).encode()
        atomic_write_bytes(cfg.run_dir / report_name, lambda f: f.write(text))
    world.watch.barrier("the barrier after writing the report")  # sync point: report written
    return report


def main(argv=None, prog: str = "hpcsgd.lm.score") -> int:
    p = argparse.ArgumentParser(prog=prog, description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("config")
    p.add_argument("--snapshot", type=Path, required=True, help="the checkpoint to score")
    p.add_argument("--report", default="test_eval.json",
                   help="file name of the JSON report in the run folder")
    args, overrides = p.parse_known_args(argv)

    def start(world):
        report = report_file(args.report)
        cfg = agree(world, lambda: config_mod.load_config(args.config, overrides, task="lm"),
                    config_mod.ConfigError)
        data = agree(world, lambda: load_data(cfg), CorpusError)
        run_or_abort(world, score, cfg, world, data, args.snapshot, report)
    return evaluation_entry(prog, start)


if __name__ == "__main__":
    sys.exit(main())
