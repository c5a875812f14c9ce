"""Word-level LSTM language model (Zaremba et al. 2014), the PTB model DATE trains
(You et al. 2019, section 4): embedding - stacked LSTM - dropout - linear decoder over the
vocabulary. Sizes: "small" 2 x 200, "medium" 2 x 650, "large" 2 x 1500 (10,000-word PTB)."""
from __future__ import annotations

import torch
import torch.nn as nn

SIZES = {"small": (200, 0.0), "medium": (650, 0.5), "large": (1500, 0.65)}


class LSTMLanguageModel(nn.Module):
    def __init__(self, vocab: int, hidden: int, layers: int = 2, dropout: float = 0.0,
                 init_range: float = 0.1):
        super().__init__()
        self.embed = nn.Embedding(vocab, hidden)
        self.lstm = nn.LSTM(hidden, hidden, layers, dropout=dropout if layers > 1 else 0.0,
                            batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.decoder = nn.Linear(hidden, vocab)
        for p in self.parameters():  # Zaremba et al.: uniform in [-0.1, 0.1] (small model)
            nn.init.uniform_(p, -init_range, init_range)

    def forward(self, tokens: torch.Tensor, state=None):
        """tokens (batch, time) -> logits (batch, time, vocab), new (h, c) state."""
        out, state = self.lstm(self.drop(self.embed(tokens)), state)
        return self.decoder(self.drop(out)), state


def lstm_lm(num_classes: int = 10000, size: str = "small", **_) -> LSTMLanguageModel:
    """num_classes is the vocabulary size (the model's output classes)."""
    if size not in SIZES:
        raise ValueError(f"LSTM size {size!r}: known {', '.join(SIZES)}")
    hidden, dropout = SIZES[size]
    return LSTMLanguageModel(num_classes, hidden, 2, dropout)
