"""The configuration tree: typed dataclass sections, loaded from TOML, overridden from the CLI.

Precedence: command line (``--optim.base_lr=6.4``) > TOML file (``jobs/*.toml``) > defaults.
Validation happens once, before any rank does work: every error names the option and value.
Checks that need the world size (divisibility of the global batch) take it as an argument.

    recipe.py    [data] [model] [optim] [schedule]: the sections the papers prescribe
    job.py       [train] [compute] [comm] [checkpoint] [cluster] [lm] [run]: how a run executes
    tree.py      Config, the whole tree
    load.py      load_config (TOML + overrides), to_toml
    validate.py  validate(cfg, world_size), local_batch
    errors.py    ConfigError

Every name is importable from ``hpcsgd.config`` itself; the field docstrings in recipe.py and
job.py are the documentation of the options.
"""
from hpcsgd.config.errors import ConfigError
from hpcsgd.config.job import (CheckpointConfig, ClusterConfig, CommConfig, ComputeConfig, LMConfig,
                               RunConfig, TrainConfig)
from hpcsgd.config.load import load_config, to_toml
from hpcsgd.config.recipe import DataConfig, ModelConfig, OptimConfig, ScheduleConfig
from hpcsgd.config.tree import Config
from hpcsgd.config.validate import local_batch, validate

__all__ = [
    "CheckpointConfig", "ClusterConfig", "CommConfig", "ComputeConfig", "Config", "ConfigError",
    "DataConfig", "LMConfig", "ModelConfig", "OptimConfig", "RunConfig", "ScheduleConfig",
    "TrainConfig", "load_config", "local_batch", "to_toml", "validate",
]
