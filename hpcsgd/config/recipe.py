"""The training recipe's sections: [data], [model], [optim], [schedule].

What the papers prescribe: data set and augmentation, architecture, optimizer, LR and
weight-decay schedule. The docstring under each field is its documentation; each section's
``check()`` refuses its own bad values, naming the option.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from hpcsgd.config.choices import (DataName, Decay, LRScaling, MomentumStyle, OptimName,
                                   RollerCoasterWarmup, Warmup)
from hpcsgd.config.errors import require


@dataclass
class DataConfig:
    name: DataName = "fashion-mnist"
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
    max_image_pixels: int = 40_000_000
    """An encoded image whose header claims more pixels (width x height) is a corrupt record,
    refused before anything is decoded or allocated (a 69-byte PNG can claim 20000 x 20000).
    ImageNet's largest images are about 10 million pixels."""
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
    """Training: decode JPEGs at 1/2, 1/4 or 1/8 size when the crop stays at least crop_size
    (evaluation always decodes at full size, as Caffe and Pillow do)."""
    fast_decode: bool = True
    """Training: libjpeg-turbo's fast integer IDCT and plain chroma upsampling (faster; up to
    ~140 levels off on sharp edges). Evaluation always uses the accurate IDCT and smooth
    upsampling."""
    region_decode: bool = True
    """Decode only the crop box with TurboJPEG 3 (the turbojpeg wheel; ~10-15% faster, the
    same pixels as a whole decode with smooth upsampling: docs/data_path.md); false, or no
    TurboJPEG 3 library: whole images with simplejpeg."""

    def check(self) -> None:
        require(0.0 <= self.max_corrupt_fraction < 1.0, "data.max_corrupt_fraction",
                 self.max_corrupt_fraction, "must be in [0, 1)")
        require(self.workers >= 0, "data.workers", self.workers, "must be >= 0")
        require(self.max_image_pixels >= 1, "data.max_image_pixels", self.max_image_pixels,
                 "must be >= 1")
        require(self.prefetch_batches >= 1, "data.prefetch_batches", self.prefetch_batches,
                 "must be >= 1")
        require(self.crop_size >= 1, "data.crop_size", self.crop_size, "must be >= 1")
        require(self.eval_resize >= self.crop_size, "data.eval_resize", self.eval_resize,
                 f"must be >= data.crop_size = {self.crop_size}")
        lo, hi = (self.scale_range + [0, 0])[:2]
        require(len(self.scale_range) == 2 and 0 < lo <= hi <= 1, "data.scale_range",
                 self.scale_range, "must be [lo, hi] with 0 < lo <= hi <= 1")
        lo, hi = (self.ratio_range + [0, 0])[:2]
        require(len(self.ratio_range) == 2 and 0 < lo <= hi, "data.ratio_range",
                 self.ratio_range, "must be [lo, hi] with 0 < lo <= hi")
        channels = 1 if self.name == "fashion-mnist" else 3
        for option, values in (("data.mean", self.mean), ("data.std", self.std)):
            require(len(values) in (0, channels), option, values,
                     f"must be [] or {channels} values for data.name = {self.name!r}")
        require(all(v > 0 for v in self.std), "data.std", self.std, "must be > 0")


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
        require(self.name in MODELS, "model.name", self.name,
                 f"unknown model (known: {', '.join(sorted(MODELS))})")
        require(self.num_classes >= 2, "model.num_classes", self.num_classes, "must be >= 2")
        require(0.0 < self.bn_momentum <= 1.0, "model.bn_momentum", self.bn_momentum,
                 "must be in (0, 1]")


@dataclass
class OptimConfig:
    name: OptimName = "sgd"
    """Optimizer: "sgd" (momentum SGD; momentum 0 = plain SGD), "lars" (You et al. 3.2.3),
    "adagrad", "rmsprop" or "adam" (hpcsgd/optim/build.py)."""
    base_lr: float = 0.1
    """Peak LR for the global batch; with schedule.lr_scaling it is lr0 for schedule.base_batch."""
    momentum: float = 0.9
    """Momentum of "sgd" and "lars" (the adaptive optimizers do not use it)."""
    nesterov: bool = False
    """Nesterov momentum ("sgd" only)."""
    momentum_style: MomentumStyle = "pytorch"
    """"pytorch" (v = mu v + g; w -= lr v) or "caffe" (v = mu v + lr g; w -= v); they differ
    only when the LR changes (docs/schedules.md, Goyal et al.'s momentum correction)."""
    weight_decay: float = 5e-4
    """L2 weight decay; the schedule may change it (schedule.wd_*, collapse)."""
    no_decay_bn_bias: bool = True
    """Exclude BatchNorm parameters and biases from weight decay."""
    layerwise_bn_bias: bool = True
    """Apply the LARS/DATE per-layer ratio to BatchNorm parameters and biases too, as You et
    al. do (3.2.3, Table 4: a layer's bias is a layer of its own). false = the MLPerf-style
    exclusion: they take plain momentum at the global LR (and, with no_decay_bn_bias, no
    weight decay)."""
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
        require(self.base_lr > 0, "optim.base_lr", self.base_lr, "must be > 0")
        require(0.0 <= self.momentum < 1.0, "optim.momentum", self.momentum, "must be in [0, 1)")
        require(self.weight_decay >= 0, "optim.weight_decay", self.weight_decay, "must be >= 0")
        require(not self.nesterov or self.momentum > 0, "optim.nesterov", self.nesterov,
                 "needs momentum > 0")
        require(not self.nesterov or self.name == "sgd", "optim.nesterov", self.nesterov,
                 f"only with optim.name = 'sgd' (not {self.name!r})")
        require(self.lars_eta > 0, "optim.lars_eta", self.lars_eta, "must be > 0")
        require(self.lars_eps >= 0, "optim.lars_eps", self.lars_eps, "must be >= 0")
        require(not self.lars_clip or self.name == "lars", "optim.lars_clip", self.lars_clip,
                 f"only with optim.name = 'lars' (not {self.name!r})")
        require(not self.date or self.name != "lars", "optim.date", self.date,
                 "DATE bounds its own ratio on sgd/adagrad/rmsprop/adam, not on top of LARS")
        require(0.0 <= self.date_lower <= self.date_upper, "optim.date_lower",
                 self.date_lower, f"must be in [0, optim.date_upper = {self.date_upper}]")
        require(len(self.adam_betas) == 2 and all(0.0 <= b < 1.0 for b in self.adam_betas),
                 "optim.adam_betas", self.adam_betas, "must be two numbers in [0, 1)")
        require(0.0 <= self.rmsprop_alpha < 1.0, "optim.rmsprop_alpha", self.rmsprop_alpha,
                 "must be in [0, 1)")
        require(self.eps > 0, "optim.eps", self.eps, "must be > 0")


@dataclass
class ScheduleConfig:
    lr_scaling: LRScaling = "none"
    """"none" (optim.base_lr is the peak), "linear" (peak = lr0 B/B0) or "sqrt" (lr0 sqrt(B/B0)),
    with lr0 = optim.base_lr, B0 = base_batch, B = train.global_batch."""
    base_batch: int = 0
    """B0, the baseline batch of lr_scaling and legw."""
    warmup_epochs: float = 0.0
    """Warmup length in epochs (with legw: w0, the baseline's warmup at base_batch)."""
    warmup_start_lr: float = 0.0
    """LR at the start of a gradual warmup, and during a constant warmup."""
    warmup: Warmup = "linear"
    """"linear" (gradual, Goyal et al.), "constant" (start LR, then the peak) or "quadratic"."""
    legw: bool = False
    """LEGW (DATE 3.1): warmup epochs = warmup_epochs * B/B0 (fixed warmup iterations)."""
    decay: Decay = "poly"
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
    roller_coaster_warmup: RollerCoasterWarmup = "run"
    """w in DATE's (1 - w/E): "run" (this run's warmup: continuous at the peak) or "baseline"
    (w0, as DATE's worked LeNet example writes (1 - 2/30))."""
    collapse_epochs: float = 0.0
    """Codreanu V-B2 collapse over the last N epochs (0 = none); in a collapse branch
    (branch_from), the branch's length."""
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
    cyclic_snapshot_start: bool = False
    """Cyclic: snapshot at cyclic_start too (Table XI's 1 and 1c), besides every cycle end."""
    branch_from: float = 0.0
    """A collapse branch (Codreanu VI, Table XI's "Nc"): this run continues a snapshot taken at
    this epoch (checkpoint.resume = the snapshot) with a collapse of collapse_epochs epochs
    (power-2 LR decay to 0 from the snapshot's LR, weight decay x collapse_wd_factor,
    scale/aspect augmentation off) and ends there. 0 = an ordinary run. The main run's
    schedule (train.epochs included) stays as it was: it gives the LR at the branch point."""

    def check(self) -> None:
        require(self.base_batch > 0 or (self.lr_scaling == "none" and not self.legw),
                 "schedule.base_batch", self.base_batch,
                 "must be > 0 with lr_scaling or legw (the baseline batch B0)")
        require(self.base_batch >= 0, "schedule.base_batch", self.base_batch, "must be >= 0")
        require(self.warmup_epochs >= 0, "schedule.warmup_epochs", self.warmup_epochs,
                 "must be >= 0")
        require(self.warmup_start_lr >= 0, "schedule.warmup_start_lr", self.warmup_start_lr,
                 "must be >= 0")
        require(self.power > 0, "schedule.power", self.power, "must be > 0")
        require(list(self.milestones) == sorted(self.milestones), "schedule.milestones",
                 self.milestones, "must be increasing")
        require(self.end_lr >= 0, "schedule.end_lr", self.end_lr, "must be >= 0")
        require(self.roller_coaster_floor >= 0, "schedule.roller_coaster_floor",
                 self.roller_coaster_floor, "must be >= 0")
        require(self.collapse_epochs >= 0, "schedule.collapse_epochs", self.collapse_epochs,
                 "must be >= 0")
        require(0.0 <= self.collapse_fraction < 1.0, "schedule.collapse_fraction",
                 self.collapse_fraction, "must be in [0, 1)")
        require(not (self.collapse_epochs and self.collapse_fraction),
                 "schedule.collapse_fraction", self.collapse_fraction,
                 f"set either it or schedule.collapse_epochs (= {self.collapse_epochs}), not both")
        require(not (self.decay == "cyclic" and not self.branch_from
                      and (self.collapse_epochs or self.collapse_fraction)),
                 "schedule.collapse_epochs", self.collapse_epochs or self.collapse_fraction,
                 "the cyclic run's collapses are branches from its snapshots (set "
                 "schedule.branch_from, or run python -m hpcsgd.collapsed_ensemble)")
        require(self.branch_from >= 0, "schedule.branch_from", self.branch_from, "must be >= 0")
        require(not self.branch_from or self.collapse_epochs > 0, "schedule.collapse_epochs",
                 self.collapse_epochs, f"a collapse branch (schedule.branch_from = "
                 f"{self.branch_from}) needs its length in epochs, > 0")
        require(self.collapse_power > 0, "schedule.collapse_power", self.collapse_power,
                 "must be > 0")
        require(self.collapse_wd_factor >= 0, "schedule.collapse_wd_factor",
                 self.collapse_wd_factor, "must be >= 0")
        require(len(self.wd_values) == len(self.wd_milestones), "schedule.wd_values",
                 self.wd_values, f"needs one value per wd_milestones entry {self.wd_milestones}")
        require(list(self.wd_milestones) == sorted(self.wd_milestones), "schedule.wd_milestones",
                 self.wd_milestones, "must be increasing")
        require(all(v >= 0 for v in self.wd_values), "schedule.wd_values", self.wd_values,
                 "must be >= 0")
        require(0 < self.cyclic_linear_until < self.cyclic_start, "schedule.cyclic_linear_until",
                 self.cyclic_linear_until, f"must be in (0, cyclic_start = {self.cyclic_start})")
        require(0 < self.cyclic_start_ratio <= 1, "schedule.cyclic_start_ratio",
                 self.cyclic_start_ratio, "must be in (0, 1]")
        for name in ("cyclic_rewarm_epochs", "cyclic_decay_epochs", "cyclic_power"):
            require(getattr(self, name) > 0, f"schedule.{name}", getattr(self, name),
                     "must be > 0")
        for name in ("cyclic_rewarm_factor", "cyclic_decay_factor"):
            require(getattr(self, name) >= 1, f"schedule.{name}", getattr(self, name),
                     "must be >= 1")

