"""The word-level language model of DATE's LSTM/PTB claim (You et al. 2019, section 4.1.2).

    mpiexec -n 4 .venv/bin/python -m hpcsgd.lm.train jobs/experiments/ptb_lstm.toml

Modules: `corpus` (PTB text -> <eos>-closed tokens -> 10k vocabulary ids), `streams` (per-rank
contiguous token streams and BPTT windows, evaluation streams: pure functions), `evaluate`
(exact perplexity over a split shared by the ranks), `train` (the entry point and the loop).
The model is hpcsgd.models.lstm.LSTMLanguageModel; optimizer, schedule, gradient reducer,
metrics and checkpoints are hpcsgd's own.
"""
