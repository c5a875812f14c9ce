"""The configuration tree: typed dataclass sections, loaded from TOML, overridden from the CLI.

Precedence: command line (``--optim.base_lr=6.4``) > TOML file (``jobs/*.toml``) > defaults.
Validation happens once, before any rank does work: every error names the option and value.
Checks that need the world size (divisibility of the global batch) take it as an argument.
"""
from __future__ import annotations

import dataclasses
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path


class ConfigError(ValueError):
    """A configuration that must not run; the message names the option and the value."""


@dataclass
class DataConfig:
    name: str = "fashion-mnist"
    """Data set: "fashion-mnist" (28x28 grey) or "imagenet" (encoded JPEG records)."""
    path: str = "data/fashion-mnist"
    """LMDB folder holding one LMDB per split (`<path>/train`, `<path>/test`)."""
    train_split: str = "train"
    eval_split: str = "test"
    augment: bool = True
    """Training augmentation (Fashion-MNIST: random flip and 2-pixel shift)."""
    max_corrupt_fraction: float = 0.001
    """Corrupt records are counted and skipped; above this fraction of a shard the run stops."""


@dataclass
class ModelConfig:
    name: str = "lenet"
    """Architecture, from hpcsgd.models.MODELS."""
    num_classes: int = 10
    bn_momentum: float = 0.05
    """PyTorch BN momentum = 1 - Caffe moving-average fraction (Codreanu et al. IV-C: 0.95)."""
    zero_init_last_bn: bool = True
    """gamma = 0 on the last BN of each residual block (Goyal et al.)."""


@dataclass
class OptimConfig:
    name: str = "sgd"
    """Optimizer: "sgd" (momentum SGD)."""
    base_lr: float = 0.1
    """Peak learning rate for the global batch (after any scaling rule)."""
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    no_decay_bn_bias: bool = True
    """Exclude BatchNorm parameters and biases from weight decay."""


@dataclass
class ScheduleConfig:
    warmup_epochs: float = 0.0
    """Gradual linear warmup length (Goyal et al.), from warmup_start_lr to base_lr."""
    warmup_start_lr: float = 0.0
    decay: str = "poly"
    """"poly", "cosine", "multistep" or "constant"."""
    power: float = 1.0
    """Poly decay power (1 = Codreanu et al.'s linear decay, 2 = You et al.)."""
    milestones: list[float] = field(default_factory=lambda: [30.0, 60.0, 80.0])
    """Multistep epochs at which the LR is multiplied by `gamma` (Goyal et al.: 30, 60, 80)."""
    gamma: float = 0.1
    end_lr: float = 0.0


@dataclass
class TrainConfig:
    epochs: float = 3.0
    global_batch: int = 256
    """Images per optimizer step over all ranks and micro-batches."""
    accumulation: int = 1
    """Micro-batches per step (Caffe iter_size); local batch = global / (ranks * accumulation)."""
    seed: int = 0
    eval_every_epochs: float = 1.0
    log_every_steps: int = 20
    target_top1: float = 0.0
    """If > 0, the time at which eval top-1 first reaches it is logged (time to accuracy)."""


@dataclass
class ComputeConfig:
    threads: int = 0
    """OpenMP compute threads per rank; 0 = this rank's cores / ranks on this node."""
    channels_last: bool = True
    """NHWC activations: oneDNN's native convolution layout on CPU (measured faster)."""


@dataclass
class CommConfig:
    backend: str = "mpi"
    """Gradient allreduce backend: "mpi" (mpi4py buffer API); oneCCL/gloo plug into the same seam."""
    bucket_mb: float = 25.0
    """Gradients are fused into flat buckets of about this size for the allreduce."""
    consistency_check_steps: int = 0
    """Every N steps compare a checksum of the weights across ranks (0 = only at the end)."""


@dataclass
class RunConfig:
    name: str = "run"
    out_dir: str = "runs"
    """Run folder = <out_dir>/<name>: config.toml, metrics.jsonl, final checkpoint."""


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    compute: ComputeConfig = field(default_factory=ComputeConfig)
    comm: CommConfig = field(default_factory=CommConfig)
    run: RunConfig = field(default_factory=RunConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.run.out_dir) / self.run.name


# ---------------------------------------------------------------------------- loading

def _coerce(value, typ, option: str):
    """Check/convert one value against its annotated type; no silent truncation."""
    origin = typing.get_origin(typ)
    if origin is list:
        (item,) = typing.get_args(typ)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{option}: expected a list, got {value!r}")
        return [_coerce(v, item, f"{option}[{i}]") for i, v in enumerate(value)]
    if typ is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{option}: expected true/false, got {value!r}")
    if typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{option}: expected an integer, got {value!r}")
    if typ is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{option}: expected a number, got {value!r}")
    if typ is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{option}: expected a string, got {value!r}")
    raise TypeError(f"unsupported config type {typ} for {option}")


def _sections() -> dict[str, type]:
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config)}


def _set(cfg: Config, option: str, value) -> None:
    section, _, key = option.partition(".")
    sections = _sections()
    if section not in sections or not key:
        raise ConfigError(f"unknown option {option!r} (sections: {', '.join(sections)})")
    obj = getattr(cfg, section)
    hints = typing.get_type_hints(type(obj))
    if key not in hints:
        raise ConfigError(f"unknown option {option!r} (known in [{section}]: {', '.join(hints)})")
    setattr(obj, key, _coerce(value, hints[key], option))


def _parse_cli_value(text: str):
    """A CLI value is read as a TOML value; bare words are strings (--run.name=foo)."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> Config:
    """Defaults <- TOML file <- ``--section.key=value`` overrides. Raises ConfigError."""
    cfg = Config()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist")
        try:
            table = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: not valid TOML: {e}") from None
        for section, values in table.items():
            if not isinstance(values, dict):
                raise ConfigError(f"{path}: top-level key {section!r} must be a [section]")
            for key, value in values.items():
                _set(cfg, f"{section}.{key}", value)
    for arg in overrides:
        if not arg.startswith("--") or "=" not in arg:
            raise ConfigError(f"override {arg!r} must look like --section.key=value")
        option, _, text = arg[2:].partition("=")
        _set(cfg, option, _parse_cli_value(text))
    validate(cfg)
    return cfg


# ---------------------------------------------------------------------------- validation

def _require(ok: bool, option: str, value, why: str) -> None:
    if not ok:
        raise ConfigError(f"{option} = {value!r}: {why}")


def validate(cfg: Config, world_size: int | None = None) -> None:
    """Every rule that can be checked from the config alone, plus the world size when given."""
    from hpcsgd.models import MODELS  # local import: models import torch
    from hpcsgd.comm import BACKENDS

    t, o, s = cfg.train, cfg.optim, cfg.schedule
    _require(cfg.data.name in ("fashion-mnist", "imagenet"), "data.name", cfg.data.name,
             "must be 'fashion-mnist' or 'imagenet'")
    _require(0.0 <= cfg.data.max_corrupt_fraction < 1.0, "data.max_corrupt_fraction",
             cfg.data.max_corrupt_fraction, "must be in [0, 1)")
    _require(cfg.model.name in MODELS, "model.name", cfg.model.name,
             f"unknown model (known: {', '.join(sorted(MODELS))})")
    _require(cfg.model.num_classes >= 2, "model.num_classes", cfg.model.num_classes, "must be >= 2")
    _require(0.0 < cfg.model.bn_momentum <= 1.0, "model.bn_momentum", cfg.model.bn_momentum,
             "must be in (0, 1]")
    _require(o.name == "sgd", "optim.name", o.name, "must be 'sgd'")
    _require(o.base_lr > 0, "optim.base_lr", o.base_lr, "must be > 0")
    _require(0.0 <= o.momentum < 1.0, "optim.momentum", o.momentum, "must be in [0, 1)")
    _require(o.weight_decay >= 0, "optim.weight_decay", o.weight_decay, "must be >= 0")
    _require(not o.nesterov or o.momentum > 0, "optim.nesterov", o.nesterov, "needs momentum > 0")
    _require(s.decay in ("poly", "cosine", "multistep", "constant"), "schedule.decay", s.decay,
             "must be 'poly', 'cosine', 'multistep' or 'constant'")
    _require(s.warmup_epochs >= 0, "schedule.warmup_epochs", s.warmup_epochs, "must be >= 0")
    _require(s.warmup_epochs < t.epochs, "schedule.warmup_epochs", s.warmup_epochs,
             f"must be shorter than train.epochs = {t.epochs}")
    _require(s.power > 0, "schedule.power", s.power, "must be > 0")
    _require(list(s.milestones) == sorted(s.milestones), "schedule.milestones", s.milestones,
             "must be increasing")
    _require(t.epochs > 0, "train.epochs", t.epochs, "must be > 0")
    _require(t.global_batch >= 1, "train.global_batch", t.global_batch, "must be >= 1")
    _require(t.accumulation >= 1, "train.accumulation", t.accumulation, "must be >= 1")
    _require(t.eval_every_epochs > 0, "train.eval_every_epochs", t.eval_every_epochs, "must be > 0")
    _require(t.log_every_steps >= 1, "train.log_every_steps", t.log_every_steps, "must be >= 1")
    _require(cfg.compute.threads >= 0, "compute.threads", cfg.compute.threads,
             "must be >= 0 (0 = automatic)")
    _require(0.0 <= t.target_top1 <= 1.0, "train.target_top1", t.target_top1,
             "is a fraction in [0, 1]")
    _require(cfg.comm.backend in BACKENDS, "comm.backend", cfg.comm.backend,
             f"unknown backend (available: {', '.join(sorted(BACKENDS))})")
    _require(cfg.comm.bucket_mb > 0, "comm.bucket_mb", cfg.comm.bucket_mb, "must be > 0")
    _require(cfg.comm.consistency_check_steps >= 0, "comm.consistency_check_steps",
             cfg.comm.consistency_check_steps, "must be >= 0")
    _require(bool(cfg.run.name) and "/" not in cfg.run.name, "run.name", cfg.run.name,
             "must be a non-empty folder name")
    if world_size is not None:
        per_step = world_size * t.accumulation
        _require(t.global_batch % per_step == 0, "train.global_batch", t.global_batch,
                 f"must be divisible by ranks x accumulation = {world_size} x {t.accumulation}")


def local_batch(cfg: Config, world_size: int) -> int:
    """Images per rank per micro-batch (validated divisible)."""
    return cfg.train.global_batch // (world_size * cfg.train.accumulation)


# ---------------------------------------------------------------------------- output

def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")


def to_toml(cfg: Config) -> str:
    """The full tree, every option, as TOML that load_config reads back to an equal Config."""
    lines = []
    for section in dataclasses.fields(cfg):
        lines.append(f"[{section.name}]")
        for key, value in dataclasses.asdict(getattr(cfg, section.name)).items():
            lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)
