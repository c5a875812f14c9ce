import os

import numpy as np
from mpi4py import MPI


def test_world_size_is_what_the_launcher_asked_for(world):
    # Another MPI's mpiexec would start N singletons (size 1 each): catch it here.
    expected = int(os.environ.get("HPCSGD_EXPECT_WORLD", "1"))
    assert world.size == expected


def test_node_communicator_groups_the_ranks_of_this_node(world):
    hosts = world.comm.allgather(world.hostname)
    assert world.local_size == hosts.count(world.hostname)
    assert 0 <= world.local_rank < world.local_size
    assert world.num_nodes == len(set(hosts))


def test_buffer_allreduce_sums_over_ranks(world):
    x = np.full(1000, world.rank + 1, np.float32)
    world.comm.Allreduce(MPI.IN_PLACE, x, op=MPI.SUM)
    assert np.all(x == world.size * (world.size + 1) / 2)
