"""Data-parallel training of the word-level LSTM language model (DATE's PTB experiments).

    mpiexec -n 4 .venv/bin/python -m hpcsgd.lm.train jobs/experiments/ptb_lstm.toml [--train.epochs=2]

The same configuration tree, optimizers (SGD/momentum, LARS, DATE, AdaGrad, RMSProp, Adam),
schedules (LR scaling, LEGW, roller coaster, ...), gradient reducer, metrics and checkpoint
format as the CNN trainer (hpcsgd/train.py); the `[lm]` section says what is different: the
corpus, the BPTT length, the LSTM's size and gradient clipping. `train.global_batch` counts
token *streams* (sequences) per step over all ranks, as DATE's batch sizes do.

Every step: window of seq_len tokens from each of this rank's streams -> forward from the
carried hidden state -> backward -> gradient allreduce (average) -> step (clipping after DATE's ratio:
hpcsgd.optim.clip_before_update). Rank 0
writes runs/<name>/: config.toml, metrics.jsonl (tags start/train/eval/summary; eval has the
perplexity of lm.eval_split), summary.json and final.pt.

Exit codes: 0 done; 2 refused before any work (bad config, corpus unavailable).
"""
from __future__ import annotations

import math
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from hpcsgd import config as config_mod
from hpcsgd.checkpoint import capture_state, save_checkpoint
from hpcsgd.comm import build_backend, build_reducer
from hpcsgd.comm.reducer import broadcast_state_, check_replicas
from hpcsgd.compute import compute_threads
from hpcsgd.entry import config_from_argv, run_entry
from hpcsgd.lm.corpus import CorpusError, load_corpus
from hpcsgd.lm.evaluate import evaluate_perplexity
from hpcsgd.lm.streams import steps_per_epoch, train_streams, window
from hpcsgd.metrics import Timer
from hpcsgd.models.lstm import LSTMLanguageModel
from hpcsgd.optim import apply_schedule_, build_optimizer, clip_before_update, optimizer_stats
from hpcsgd.run_folder import finish_run, open_run
from hpcsgd.schedules import build_schedule
from hpcsgd.world import World, agree, run_or_abort


def check_lm_config(cfg: config_mod.Config, world_size: int) -> None:
    """What the LM trainer refuses beyond the tree's own rules."""
    config_mod.validate(cfg, world_size=world_size)

    def require(ok, option, value, why):
        if not ok:
            raise config_mod.ConfigError(f"{option} = {value!r}: {why}")
    require(cfg.model.name == "lstm_lm", "model.name", cfg.model.name,
            "the language-model trainer trains 'lstm_lm' (sizes in [lm])")
    require(cfg.train.accumulation == 1, "train.accumulation", cfg.train.accumulation,
            "must be 1 for the language model (streams carry their hidden state)")
    require(cfg.checkpoint.resume == "", "checkpoint.resume", cfg.checkpoint.resume,
            "the language-model trainer does not resume (runs are short)")


def load_ids(cfg: config_mod.Config) -> tuple[int, np.ndarray, np.ndarray]:
    """(vocabulary size, training ids (the configured leading fraction), evaluation ids)."""
    vocab, ids = load_corpus(cfg.lm.corpus, cfg.lm.vocab_size, ("train", cfg.lm.eval_split))
    train_ids = ids["train"][:int(len(ids["train"]) * cfg.lm.train_fraction)]
    return len(vocab), train_ids, ids[cfg.lm.eval_split]


def train_lm(cfg: config_mod.Config, world: World, data) -> dict:
    """Run the configured LM training on (vocab size, train ids, eval ids); returns the
    summary (final perplexity, throughput, ...)."""
    t0 = time.time()
    torch.set_num_threads(compute_threads(cfg.compute, world.local_size))
    torch.manual_seed(cfg.train.seed)
    vocab_size, train_ids, eval_ids = data
    run_dir = cfg.run_dir
    log = open_run(cfg, world, f"hpcsgd.lm: {world.size} ranks, {torch.get_num_threads()} "
                   "compute threads per rank")

    lm, batch = cfg.lm, cfg.train.global_batch
    streams = train_streams(train_ids, global_batch=batch, rank=world.rank, size=world.size)
    spe = steps_per_epoch(streams.shape[1], lm.seq_len)
    schedule = build_schedule(cfg, steps_per_epoch=spe)
    total_steps = max(1, round(schedule.plan.end_epochs * spe))
    if cfg.train.max_steps:
        total_steps = min(total_steps, cfg.train.max_steps)
    eval_every = max(1, round(cfg.train.eval_every_epochs * spe))

    model = LSTMLanguageModel(vocab_size, lm.hidden, lm.layers, lm.dropout)
    backend = build_backend(cfg.comm.backend, world)
    broadcast_state_(model, backend)  # every replica starts from rank 0's weights
    torch.manual_seed(cfg.train.seed + 1 + world.rank)  # per-rank dropout masks
    optimizer = build_optimizer(model, cfg.optim)
    params = [p for p in model.parameters() if p.requires_grad]
    if lm.clip_norm:
        # after DATE has taken its ratio; the averaged gradient is identical on every rank,
        # so is the clipping
        clip_before_update(optimizer, params, lm.clip_norm)
    reducer = build_reducer(model, cfg.comm, world)
    log.write("start", ranks=world.size, vocab=vocab_size, train_tokens=len(train_ids),
              eval_tokens=len(eval_ids), local_streams=streams.shape[0],
              stream_length=streams.shape[1], steps_per_epoch=spe, total_steps=total_steps,
              params=sum(p.numel() for p in params))

    def evaluate_now() -> dict:
        return evaluate_perplexity(model, eval_ids, world, num_streams=lm.eval_streams,
                                   seq_len=lm.seq_len)

    model.train()
    timer, loss_sum, loss_n, tokens, step = Timer(), 0.0, 0, 0, 0
    train_time, tokens_done, last_eval, state = 0.0, 0, {}, None
    while step < total_steps:
        epoch, in_epoch = divmod(step, spe)
        if in_epoch == 0:
            state = None  # each epoch reads the streams from their start again
        inputs, targets = (torch.from_numpy(np.ascontiguousarray(a))
                           for a in window(streams, in_epoch, lm.seq_len))
        timer.mark("data")
        logits, state = model(inputs, state)
        state = tuple(s.detach() for s in state)  # truncated BPTT: carry values, not graphs
        loss = F.cross_entropy(logits.reshape(-1, vocab_size), targets.reshape(-1))
        loss.backward()
        loss_sum, loss_n, tokens = loss_sum + loss.item(), loss_n + 1, tokens + targets.numel()
        timer.mark("compute")
        reducer.synchronize()  # sync point: gradients averaged over all ranks
        timer.mark("comm")
        apply_schedule_(optimizer, schedule.at(step / spe))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        timer.mark("update")
        step += 1

        if step % cfg.train.log_every_steps == 0 or step == total_steps:
            elapsed = sum(timer.reset().values())
            train_time += elapsed
            mean_loss = world.comm.allreduce(loss_sum / loss_n) / world.size
            rate = world.comm.allreduce(tokens) / elapsed
            tokens_done += tokens * world.size
            log.write("train", step=step, epoch=round(step / spe, 4), loss=mean_loss,
                      perplexity=math.exp(min(mean_loss, 50.0)),
                      lr=optimizer.param_groups[0]["lr"], tok_per_s=rate,
                      **optimizer_stats(optimizer))
            log.print(f"epoch {step / spe:6.2f}  step {step:6d}/{total_steps}  loss "
                      f"{mean_loss:.4f}  lr {optimizer.param_groups[0]['lr']:.4g}  "
                      f"{rate:8.0f} tok/s")
            loss_sum, loss_n, tokens = 0.0, 0, 0
        if step % eval_every == 0 or step == total_steps:
            last_eval = evaluate_now()
            log.write("eval", step=step, epoch=round(step / spe, 4), split=lm.eval_split,
                      **last_eval)
            log.print(f"eval  epoch {step / spe:6.2f}  {lm.eval_split} perplexity "
                      f"{last_eval['perplexity']:.2f} ({last_eval['count']} targets)")
            timer.reset()  # evaluation is not training time

    reducer.close()  # stops the communication thread and the watchdog (collective)
    check_replicas(model, world)  # every rank must hold the same parameters
    progress = {"step": step, "images_done": tokens_done, "train_time": train_time,
                "wall_time": time.time() - t0}
    state_dict = capture_state(model, optimizer, progress, world)
    if world.is_root:
        save_checkpoint(run_dir / "final.pt", state_dict, config_mod.to_toml(cfg))
    summary = {"perplexity": last_eval["perplexity"], "nll": last_eval["nll"],
               "eval_split": lm.eval_split, "eval_targets": last_eval["count"],
               "steps": step, "epochs": step / spe, "ranks": world.size,
               "global_batch": batch, "seq_len": lm.seq_len,
               "train_tok_per_s": tokens_done / max(train_time, 1e-9),
               "train_time_s": train_time, "wall_time_s": time.time() - t0}
    # collective (barrier): the run folder is complete when train_lm() returns
    return finish_run(run_dir, world, log, summary,
                      f"final: {lm.eval_split} perplexity {summary['perplexity']:.2f} | "
                      f"{summary['train_tok_per_s']:.0f} tokens/s on {world.size} ranks | "
                      f"{summary['wall_time_s']:.0f} s wall | run folder {run_dir}")


def setup(argv: list[str], world: World):
    """Parse and check the config and load the corpus on every rank; all ranks agree."""
    def parse():
        cfg = config_from_argv(argv, "hpcsgd.lm.train")
        check_lm_config(cfg, world.size)
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
