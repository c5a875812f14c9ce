"""Per-image hits packed for a report: the round trip, and a count that does not fit."""
import numpy as np
import pytest

from hpcsgd.run.hits import decode_hits, encode_hits


@pytest.mark.parametrize("n", [1, 7, 8, 9, 10000])
def test_hits_round_trip(n):
    hits = np.random.default_rng(n).random(n) < 0.9
    text = encode_hits(hits)
    assert len(text) <= 4 * ((n + 7) // 8 + 2) // 3 + 4
    assert np.array_equal(decode_hits(text, n), hits)


def test_a_count_the_bits_cannot_hold_is_refused():
    text = encode_hits(np.ones(16, bool))
    with pytest.raises(ValueError, match="16 packed bits do not hold 17 images"):
        decode_hits(text, 17)
    with pytest.raises(ValueError, match="do not hold 8 images"):
        decode_hits(text, 8)
