"""Per-target and per-sentence NLL of a language model on a split (hpcsgd/lm/evaluate.py,
hpcsgd/lm/score.py): what the LSTM claim's test-text noise is measured from. One rank
(COMM_SELF); the 4-rank version is in tests/mpi/test_lm_train.py."""
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mpi4py import MPI

from hpcsgd.config import Config
from hpcsgd.lm.evaluate import evaluate_perplexity
from hpcsgd.lm.streams import eval_streams
from hpcsgd.lm.score import score, sentence_nll
from hpcsgd.models.lstm import LSTMLanguageModel
from hpcsgd.run.checkpoint import save_checkpoint
from hpcsgd.run.world import init_world

VOCAB = 50


def _model(seed=0):
    torch.manual_seed(seed)
    return LSTMLanguageModel(VOCAB, 16, 1)


def _ids(n=301, seed=3):
    return np.random.default_rng(seed).integers(0, VOCAB, n).astype(np.int64)


def test_sentences_end_after_each_eos_and_keep_the_total():
    targets = np.array([5, 0, 3, 4, 0, 7])  # eos = 0
    nll = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    assert sentence_nll(nll, targets, eos=0).tolist() == [3.0, 12.0, 6.0]  # the tail: its own
    assert sentence_nll(nll[:5], targets[:5], eos=0).tolist() == [3.0, 12.0]  # no empty tail
    assert sentence_nll(nll, np.full(6, 9), eos=0).tolist() == [21.0]  # no eos: one sentence
    with pytest.raises(ValueError, match="6 NLLs for 4 targets"):
        sentence_nll(nll, targets[:4], eos=0)


def _direct(model, ids, streams):
    """Each target's NLL from running each stream alone, start to end (the reference)."""
    ref = np.full(len(ids) - 1, np.nan)
    with torch.no_grad():
        for a, n in streams:
            logits, _ = model(torch.from_numpy(ids[None, a:a + n]))
            ref[a:a + n] = F.cross_entropy(logits[0], torch.from_numpy(ids[a + 1:a + n + 1]),
                                           reduction="none").numpy()
    return ref


@pytest.mark.parametrize("num_streams", [1, 3, 4, 7])
def test_per_target_nll_is_each_targets_own_in_text_order(num_streams):
    # 301 targets: streams of unequal lengths (e.g. 76/75/75/75), so two length groups run
    # as two batches; each stream's rows must land at its own targets, in time order
    model, ids = _model(), _ids(302)
    world = init_world(MPI.COMM_SELF)
    r = evaluate_perplexity(model, ids, world, num_streams=num_streams, seq_len=5,
                            per_target=True)
    ref = _direct(model, ids, eval_streams(len(ids), num_streams))
    np.testing.assert_allclose(r["target_nll"], ref, rtol=1e-5, atol=1e-6)
    assert r["target_nll"].sum() / 301 == pytest.approx(r["nll"], rel=1e-6)  # float32 sums
    # asked for nothing more, the evaluation is the one training runs: same numbers, no vector
    plain = evaluate_perplexity(model, ids, world, num_streams=num_streams, seq_len=5)
    assert "target_nll" not in plain and plain["nll"] == r["nll"]


def test_score_writes_the_sentence_nll_of_a_checkpoint(tmp_path):
    model, ids = _model(1), _ids()
    eos = 7
    save_checkpoint(tmp_path / "final.pt", {"model": model.state_dict()}, "")
    cfg = Config()
    cfg.model.name = "lstm_lm"
    cfg.lm.hidden, cfg.lm.layers, cfg.lm.seq_len, cfg.lm.eval_streams = 16, 1, 5, 3
    cfg.run.out_dir, cfg.run.name = str(tmp_path), "run"
    world = init_world(MPI.COMM_SELF)
    report = score(cfg, world, (VOCAB, ids, eos), tmp_path / "final.pt", "test_eval.json")
    saved = json.loads((tmp_path / "run" / "test_eval.json").read_text())
    assert saved == json.loads(json.dumps(report))  # sentence sums to 1e-5 nats
    expect = evaluate_perplexity(model, ids, world, num_streams=3, seq_len=5)
    assert saved["count"] == 300 and saved["perplexity"] == pytest.approx(expect["perplexity"])
    assert saved["split"] == cfg.lm.eval_split and saved["path"].endswith("final.pt")
    sentences = saved["sentence_nll"]
    assert len(sentences) == int((ids[1:] == eos).sum()) + (ids[-1] != eos)
    assert math.fsum(sentences) / 300 == pytest.approx(expect["nll"], rel=1e-6)
    # sentence by sentence: the targets up to each <eos> target (ids[1:], not the inputs)
    each = _direct(model, ids, eval_streams(len(ids), 3))
    ends = [t for t in range(300) if ids[t + 1] == eos]
    bounds = zip([0] + [t + 1 for t in ends], ends + [299])
    np.testing.assert_allclose(sentences[:len(ends)],
                               [each[a:b + 1].sum() for a, b in bounds][:len(ends)], rtol=1e-5)
