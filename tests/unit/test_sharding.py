import numpy as np
import pytest

from hpcsgd.data import sharding
def _epoch_indices(n, size, local_batch, accumulation, seed=3, epoch=0):
    perm = sharding.epoch_permutation(n, seed=seed, epoch=epoch)
    steps = sharding.steps_per_epoch(n, local_batch * size * accumulation)
    return {r: np.concatenate([sharding.micro_batch_indices(
        perm, step=s, micro=m, rank=r, size=size, local_batch=local_batch,
        accumulation=accumulation) for s in range(steps) for m in range(accumulation)])
        for r in range(size)}


@pytest.mark.parametrize("size, local_batch, accumulation", [(1, 8, 1), (4, 5, 1), (3, 4, 2)])
def test_epoch_shards_are_disjoint_and_cover_all_but_the_remainder(size, local_batch, accumulation):
    n = 1003
    shards = _epoch_indices(n, size, local_batch, accumulation)
    seen = np.concatenate(list(shards.values()))
    assert len(set(seen.tolist())) == len(seen)                     # disjoint, no repeats
    assert len(seen) == n - n % (size * local_batch * accumulation)  # documented remainder


def test_global_batch_content_does_not_depend_on_world_size():
    perm = sharding.epoch_permutation(100, seed=0, epoch=5)
    one = sharding.micro_batch_indices(perm, step=2, micro=0, rank=0, size=1,
                                       local_batch=16, accumulation=1)
    four = np.concatenate([sharding.micro_batch_indices(perm, step=2, micro=0, rank=r, size=4,
                                                        local_batch=4, accumulation=1)
                           for r in range(4)])
    assert np.array_equal(one, four)


def test_permutation_depends_on_seed_and_epoch_only():
    a = sharding.epoch_permutation(50, seed=1, epoch=2)
    assert np.array_equal(a, sharding.epoch_permutation(50, seed=1, epoch=2))
    assert not np.array_equal(a, sharding.epoch_permutation(50, seed=1, epoch=3))
    assert not np.array_equal(a, sharding.epoch_permutation(50, seed=2, epoch=2))


@pytest.mark.parametrize("n, size", [(10000, 4), (10, 3), (7, 8)])
def test_eval_shards_count_every_sample_once(n, size):
    shards = [sharding.eval_shard(n, rank=r, size=size) for r in range(size)]
    assert sorted(i for s in shards for i in s) == list(range(n))


def test_out_of_range_requests_raise():
    perm = sharding.epoch_permutation(10, seed=0, epoch=0)
    with pytest.raises(IndexError):
        sharding.micro_batch_indices(perm, step=1, micro=0, rank=0, size=1, local_batch=8,
                                     accumulation=1)
    with pytest.raises(ValueError, match="exceeds"):
        sharding.steps_per_epoch(10, 16)
