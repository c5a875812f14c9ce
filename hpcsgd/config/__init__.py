"""The configuration tree: typed dataclass sections, loaded from TOML, overridden from the CLI.

Precedence: command line (``--optim.base_lr=6.4``) > TOML file (``jobs/*.toml``) > defaults.
Validation happens once, as the tree is loaded and before any rank does work (load_config
with the world size and task), every error naming the option and value.
Checks that need the world size (divisibility of the global batch) take it as an argument.

    recipe.py    [data] [model] [optim] [schedule]: the sections the papers prescribe
    job.py       [train] [compute] [comm] [checkpoint] [cluster] [lm] [run]: how a run executes
    choices.py   the options that take one of a fixed set of words, typed once (Literal)
    tree.py      Config, the whole tree
    load.py      load_config (TOML + overrides, coerced to each field's type), to_toml
    validate.py  validate(cfg, world_size, task), local_batch: once, before any work
    errors.py    ConfigError, refuse/require (the one way a rule refuses)

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
