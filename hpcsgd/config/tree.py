"""The whole configuration: one field per section, in the order to_toml writes them."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hpcsgd.config.job import (CheckpointConfig, ClusterConfig, CommConfig, ComputeConfig, LMConfig,
                               RunConfig, TrainConfig)
from hpcsgd.config.recipe import DataConfig, ModelConfig, OptimConfig, ScheduleConfig


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    compute: ComputeConfig = field(default_factory=ComputeConfig)
    comm: CommConfig = field(default_factory=CommConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    run: RunConfig = field(default_factory=RunConfig)
    lm: LMConfig = field(default_factory=LMConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.run.out_dir) / self.run.name
