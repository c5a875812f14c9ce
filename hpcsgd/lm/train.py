"""Data-parallel training of the word-level LSTM language model (DATE's PTB experiments).

    mpiexec -n 4 .venv/bin/python -m hpcsgd.lm.train jobs/experiments/ptb_lstm.toml [--train.epochs=2]

One loop, two tasks: the same trainer as the image classifiers (hpcsgd/run/trainer.py, the step
in hpcsgd/run/loop.py) with LMTask below for what differs: token streams instead of images, a
loss that carries the LSTM's hidden state, perplexity instead of top-k, gradient clipping
(lm.clip_norm, a step hook that acts after DATE's ratio). So the LM trainer resumes
(checkpoint.resume, the hidden states saved per rank), stops and requeues on SIGUSR1/SIGTERM,
refuses NaN/Inf (train.nonfinite), follows the core plan and keeps the reducer's gradient
buckets. `train.global_batch` counts token *streams* (sequences) per step over all ranks, as
DATE's batch sizes do. Rank 0 writes runs/<name>/: config.toml, metrics.jsonl (train records
carry tok_per_s and perplexity; eval records the perplexity of lm.eval_split), summary.json
and final.pt.

Exit codes: as hpcsgd.train's (0 done, 2 refused before any work, 3 stopped for a requeue,
4 stall, 5 non-finite).
"""
from __future__ import annotations

import math
import sys

import numpy as np
import torch
import torch.nn.functional as F

from hpcsgd import config as config_mod
from hpcsgd.run import trainer
from hpcsgd.run.entry import config_from_argv, run_entry
from hpcsgd.lm.corpus import CorpusError, load_corpus
from hpcsgd.lm.evaluate import evaluate_perplexity
from hpcsgd.lm.streams import steps_per_epoch, train_streams, window
from hpcsgd.models.lstm import LSTMLanguageModel
from hpcsgd.optim.build import clip_before_update
from hpcsgd.run.folder import check_run_folder
from hpcsgd.run.world import World, agree, run_or_abort


def load_ids(cfg: config_mod.Config) -> tuple[int, np.ndarray, np.ndarray]:
    """(vocabulary size, training ids (the configured leading fraction), evaluation ids)."""
    vocab, ids = load_corpus(cfg.lm.corpus, cfg.lm.vocab_size, ("train", cfg.lm.eval_split))
    train_ids = ids["train"][:int(len(ids["train"]) * cfg.lm.train_fraction)]
    return len(vocab), train_ids, ids[cfg.lm.eval_split]


def build_lm(cfg: config_mod.Config, vocab_size: int) -> LSTMLanguageModel:
    """The [lm] section's LSTM over a vocabulary of vocab_size (also hpcsgd.lm.score's)."""
    return LSTMLanguageModel(vocab_size, cfg.lm.hidden, cfg.lm.layers, cfg.lm.dropout)


class LMTask:
    """The word-level LSTM language model on token streams (hpcsgd/lm/streams.py): the loss
    carries the hidden state from window to window (truncated BPTT), evaluation is the
    perplexity of lm.eval_split, and the gradients are clipped (lm.clip_norm) after DATE has
    taken its ratio."""
    prog, unit = "hpcsgd.lm", "tok"
    model_name = "lstm_lm"
    gradients_read_only = False
    """Clipping scales the averaged gradients in place: each rank keeps its own copy."""

    def __init__(self, cfg: config_mod.Config, world: World, data):
        self.cfg, self.world, self.lm = cfg, world, cfg.lm
        self.vocab_size, self.train_ids, self.eval_ids = data
        self.state = None
        """The hidden state carried from one window to the next (per rank: its streams)."""

    def build_data(self, placement) -> int:
        self.streams = train_streams(self.train_ids, global_batch=self.cfg.train.global_batch,
                                     rank=self.world.rank, size=self.world.size)
        self.spe = steps_per_epoch(self.streams.shape[1], self.lm.seq_len)
        return self.spe

    def batches(self, epoch: int, start: int, collapse):
        for step in range(start, self.spe):
            if step == 0:
                self.state = None  # each epoch reads the streams from their start again
            inputs, targets = (torch.from_numpy(np.ascontiguousarray(a))
                               for a in window(self.streams, step, self.lm.seq_len))
            yield step, 0, inputs, targets

    def build_model(self):
        return build_lm(self.cfg, self.vocab_size)

    def attach_optimizer(self, optimizer, model) -> None:
        if self.lm.clip_norm:
            # after DATE has taken its ratio; the averaged gradient is identical on every
            # rank, so is the clipping
            clip_before_update(optimizer, [p for p in model.parameters() if p.requires_grad],
                               self.lm.clip_norm)

    def loss(self, forward, inputs, targets):
        logits, state = forward(inputs, self.state)
        self.state = tuple(s.detach() for s in state)  # truncated BPTT: values, not graphs
        return F.cross_entropy(logits.reshape(-1, self.vocab_size), targets.reshape(-1))

    def evaluate(self, forward) -> dict:
        result = evaluate_perplexity(forward, self.eval_ids, self.world,
                                     num_streams=self.lm.eval_streams, seq_len=self.lm.seq_len)
        return {"split": self.lm.eval_split, **result}

    @staticmethod
    def eval_line(result: dict) -> str:
        return f"{result['split']} perplexity {result['perplexity']:.2f} ({result['count']} targets)"

    @staticmethod
    def train_fields(mean_loss) -> dict:
        return {} if mean_loss is None else {"perplexity": math.exp(min(mean_loss, 50.0))}

    def rank_state(self) -> dict:
        return {} if self.state is None else {"hidden": [s.clone() for s in self.state]}

    def load_rank_state(self, state: dict) -> None:
        # a checkpoint of another world size holds other streams' states: start from zeros
        self.state = tuple(state["hidden"]) if "hidden" in state else None

    def start_fields(self) -> dict:
        return {"vocab": self.vocab_size, "train_tokens": len(self.train_ids),
                "eval_tokens": len(self.eval_ids), "local_streams": self.streams.shape[0],
                "stream_length": self.streams.shape[1]}

    def summary(self, progress, *, steps_per_epoch: int, wall_time: float) -> tuple[dict, str]:
        last, lm = progress.last_eval, self.lm
        summary = {"perplexity": last["perplexity"], "nll": last["nll"],
                   "eval_split": lm.eval_split, "eval_targets": last["count"],
                   "steps": progress.step, "epochs": progress.step / steps_per_epoch,
                   "ranks": self.world.size, "global_batch": self.cfg.train.global_batch,
                   "seq_len": lm.seq_len,
                   "train_tok_per_s": progress.images_done / max(progress.train_time, 1e-9),
                   "train_time_s": progress.train_time, "wall_time_s": wall_time}
        return summary, (f"final: {lm.eval_split} perplexity {summary['perplexity']:.2f} | "
                         f"{summary['train_tok_per_s']:.0f} tokens/s")


def train_lm(cfg: config_mod.Config, world: World, data) -> dict:
    """Run the configured LM training on (vocab size, train ids, eval ids); returns the
    summary (final perplexity, throughput, ...)."""
    return trainer.train(LMTask(cfg, world, data), cfg, world)


def setup(argv: list[str], world: World):
    """Parse and check the config and load the corpus on every rank; all ranks agree."""
    def parse():
        cfg = config_from_argv(argv, "hpcsgd.lm.train", world_size=world.size, task="lm")
        check_run_folder(cfg)  # never mix two runs in one folder
        return cfg
    cfg = agree(world, parse, config_mod.ConfigError)
    data = agree(world, lambda: load_ids(cfg), CorpusError)
    # the streams must hold at least 2 tokens each: refuse here, on every rank together
    agree(world, lambda: train_streams(data[1], global_batch=cfg.train.global_batch,
                                       rank=world.rank, size=world.size), ValueError)
    return cfg, data


def main(argv: list[str] | None = None) -> int:
    def start(args: list[str], world: World) -> dict:
        cfg, data = setup(args, world)
        return run_or_abort(world, train_lm, cfg, world, data)
    return run_entry("hpcsgd.lm", start, argv)


if __name__ == "__main__":
    sys.exit(main())
