"""Which images of an evaluation a model got right (top-1), in split order, packed for a JSON
report. Two models evaluated on one test set are compared by their paired per-image results
(the images one got right and the other not: McNemar): the difference of their accuracies
is then known far more precisely than from the two counts alone, as if the test sets were
independent."""
from __future__ import annotations

import base64

import numpy as np


def encode_hits(hits: np.ndarray) -> str:
    """A boolean vector as base64 text of its bits (1,250 bytes for 10,000 images)."""
    return base64.b64encode(np.packbits(np.asarray(hits, bool)).tobytes()).decode("ascii")


def decode_hits(text: str, count: int) -> np.ndarray:
    """The boolean vector of `count` images that encode_hits packed."""
    bits = np.unpackbits(np.frombuffer(base64.b64decode(text), np.uint8))
    if len(bits) < count or len(bits) > count + 7:
        raise ValueError(f"{len(bits)} packed bits do not hold {count} images")
    return bits[:count].astype(bool)
