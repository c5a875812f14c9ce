"""Published numbers of Codreanu, Podareanu and Saletore (2017), as data.

Stampede2 rows count KNL nodes, one Intel Caffe rank each. MareNostrum 4 rows count CPUs
(sockets): Table VI's local batch x CPUs / 2 equals Table VII's global batch (32 x 256 =
8192), so a rank is a two-socket node (paper IV-E pins 44 threads and 4 ML-SL servers on
one node), and nodes = CPUs / 2.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EpochRow:
    table: str
    system: str
    local_batch: int
    nodes: int
    seconds: float
    """Published time per epoch (an average over a full training run, V-A1)."""
    throughput: float | None = None
    cpus: int | None = None


@dataclass(frozen=True)
class TrainRow:
    table: str
    system: str
    global_batch: int
    nodes: int
    minutes: float | None
    epochs: float
    iterations: int | None = None
    cpus: int | None = None
    note: str = ""

    @property
    def local_batch(self) -> float:
        return self.global_batch / self.nodes


S2, MN4 = "stampede2", "marenostrum4"

# Table V: time per epoch on Stampede2 (local batch, nodes, seconds).
TABLE_V = tuple(EpochRow("V", S2, b, n, s) for b, n, s in [
    (16, 256, 102), (32, 256, 85), (16, 512, 60), (20, 512, 55), (24, 512, 51.3),
    (32, 512, 48.8), (16, 768, 38), (16, 1024, 31.5), (32, 1024, 24.5), (32, 1536, 16.8)])

# Table VI: MareNostrum 4 (local batch, CPUs, images/s, seconds per epoch).
TABLE_VI = tuple(EpochRow("VI", MN4, b, c // 2, s, throughput=t, cpus=c) for b, c, t, s in [
    (32, 512, 15170, 84.3), (24, 800, 20480, 62.5), (16, 800, 19047, 67.2),
    (16, 1024, 24380, 52.5)])


def _s2(table, rows):
    return tuple(TrainRow(table, S2, g, n, m, e, it, note=note) for g, n, it, e, m, note in rows)


def _mn4(table, rows):
    return tuple(TrainRow(table, MN4, g, c // 2, m, e, it, cpus=c) for g, c, it, e, m in rows)


# (global batch, nodes, iterations, epochs, minutes, note)
TABLE_II = _s2("II", [(8192, 256, 14200, 90, 140, ""), (12288, 512, 9400, 90, 80, ""),
                      (11520, 720, 10000, 90, 62, "")])
TABLE_III = _s2("III", [
    (4096, 256, 11560, 37, 63, ""), (8192, 256, 7800, 50, 70, ""), (8192, 512, 7800, 50, 49, ""),
    (12288, 512, 5600, 54, 46, ""),
    # 11560 x 12288 images is 111 epochs, not 37, and 39 min at Table V's 38 s/epoch is 62
    # epochs: the row contradicts itself, so it is shown but left out of the error summary
    (12288, 768, 11560, 37, 39, "inconsistent in the paper")])
TABLE_IV = _s2("IV", [
    (2048, 256, 18120, 29, 64, "local batch 8: outside Table V"),
    (4096, 256, 11560, 37, 63, ""), (8192, 256, 4530, 29, 41.5, ""),
    (8192, 256, 5780, 37, 52, ""), (8192, 512, 5780, 37, 37, "")])
TABLE_IX = _s2("IX", [
    (10240, 512, 11400, 91, 82, ""), (16384, 512, 7200, 92, 74, ""),
    (32768, 1024, 4000, 100, 42, ""), (49152, 1536, 2600, 100, 28, ""),
    (65536, 128, 2100, 107, None, "VLAB cluster, local batch 512: no time published")])
# (global batch, CPUs, iterations, epochs, minutes)
TABLE_VII = _mn4("VII", [
    (8192, 512, 7800, 50, 70), (9600, 800, 8000, 60, 62.5), (6400, 800, 10000, 50, 56),
    (6400, 800, 15000, 75, 80), (8192, 1024, 10000, 64, 56), (8192, 1024, 7800, 50, 44)])

# Tables XII and XIII: the paper's own projections, 48 / 64 / 78 epochs x its time per epoch.
_PROJECTED_EPOCHS = (48, 64, 78)
TABLE_XII = tuple(
    TrainRow("XII", S2, g, n, m, e, note="paper's projection")
    for g, n, mins in [(4096, 256, (82, 109, 133)), (8192, 256, (68, 90, 110)),
                       (8192, 512, (48, 64, 78)), (10240, 512, (44, 58, 72)),
                       (12288, 512, (41, 55, 67)), (12288, 768, (31, 41, 49))]
    for e, m in zip(_PROJECTED_EPOCHS, mins))
TABLE_XIII = tuple(
    TrainRow("XIII", MN4, g, c // 2, m, e, cpus=c, note="paper's projection")
    for g, c, mins in [(8192, 512, (68, 90, 110)), (9600, 800, (50, 67, 81)),
                       (6400, 800, (54, 72, 87)), (8192, 1024, (42, 56, 68))]
    for e, m in zip(_PROJECTED_EPOCHS, mins))

TRAIN_ROWS = TABLE_II + TABLE_III + TABLE_IV + TABLE_IX + TABLE_XII + TABLE_VII + TABLE_XIII

# Quoted efficiencies (text of V-A1 and V-A2; Figs. 1-2 themselves are not in our copy).
QUOTED_EFFICIENCY = (
    # (system, local batch, from nodes, to nodes, efficiency, where)
    (S2, 32, 1, 256, 0.97, "V-A1: 'above 97%' from 1 to 256 KNL nodes"),
    (S2, 16, 256, 1024, 0.81, "V-A1: 81% from 256 to 1024 nodes, local batch 16"),
    (S2, 32, 256, 1024, 0.88, "V-A1: 88% from 256 to 1024 nodes, local batch 32"),
    (S2, 32, 1, 1536, 0.81, "V-A1: 'above 81%' from 1 to 1536 KNL nodes"),
    (MN4, 32, 1, 256, 0.90, "V-A2: 'around 90%' from 1 to 512 CPUs (256 nodes)"),
)
