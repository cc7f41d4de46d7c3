"""The training configuration: the model config plus data / optim / runtime / eval sections.

A run is described by one YAML file (shipped ones live in ``tdsclip/configs/``; ``--config demo``
names ``tdsclip/configs/demo.yaml``, anything with a ``/`` or ``.yaml`` is a path) with optional
``base: <other config>`` inheritance, then ``key=value`` overrides from the command line.
Sections other than ``model`` are typed dataclasses below; the ``model`` section is the config
dataclass of the architecture that ``model.arch`` names (``tdsclip.archs``: ``TDSCLIPConfig`` by
default). Every section follows the same rules for values, unknown keys and YAML errors
(``tdsclip.config_rules``): an unknown key or a value that does not fit is an error naming the key.
"""
from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field

import yaml

from tdsclip.config_rules import check_known, coerce_fields, load_yaml

from .overrides import apply_overrides, deep_merge


@dataclass
class DataConfig:
    """What the data pipeline (``tdsclip.data``) is asked for."""
    dataset: str = "ssv2"             # ssv2 | ssv1 | k400 | demo (selects annotation parser and flip pairs)
    root: str = ""                    # directory holding the videos (demo: the demo data directory)
    train_list: str = ""              # annotation file of the training split ("" = the dataset's default)
    val_list: str = ""                # annotation file of the validation split
    labels: str = ""                  # class-name file ("" = the dataset's default)
    batch_size: int = 32              # clips per GPU per step, after repeated augmentation
    repeated_aug: int = 2             # each decoded video augmented this many times in the same batch
    num_workers: int = 8
    decoder: str = "auto"             # dali | pyav | auto
    train_aug: str = "auto"           # auto (the dataset's recipe) | ssv2 | kinetics | none
    extra: dict = field(default_factory=dict)  # {"dataset": {...}, "loader": {...}}: extra keyword arguments
                                               # for tdsclip.data.build_dataset / VideoClipLoader


@dataclass
class OptimConfig:
    lr: float = 1e-3                  # base learning rate (1e-4 for ViT-L/14)
    betas: list = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    weight_decay: float = 0.15
    decay_all: bool = True            # published: weight decay on every parameter (norms and biases too)
    epochs: int = 30
    warmup_epochs: float = 4.0
    min_lr_ratio: float = 0.0         # cosine floor as a fraction of lr (published: 0)
    label_smoothing: float = 0.1
    grad_accum: int = 1               # micro-batches per optimiser update
    clip_grad_norm: typing.Optional[float] = None


@dataclass
class RuntimeConfig:
    seed: int = 1024
    device: str = "auto"              # auto | cpu | cuda | cuda:N
    amp: str = "bf16"                 # bf16 | fp16 | off
    output: str = "runs/default"
    resume: typing.Optional[str] = None   # a checkpoint path, a run directory, or "auto"
    on_nan: str = "stop"              # stop | skip: what a non-finite loss does
    max_skipped_steps: int = 10       # on_nan skip: this many updates skipped in a row stop the run (exit 3); 0: no limit
    on_bad_video: str = "skip"        # skip (warn, count, go on) | raise (stop, exit 2): undecodable or truncated videos
    log_every: int = 10               # optimiser steps between per-step metric records
    val_every: int = 1                # epochs between validations (0: only at the end)
    keep_checkpoints: int = 2         # newest checkpoints kept in the output dir (0: all)
    save_frozen: str = "auto"         # frozen backbone weights in checkpoints: auto (unless pretrained) | yes | no
    max_steps: typing.Optional[int] = None  # stop (with a checkpoint) after this many optimiser steps
    progress: bool = True             # live progress bar on rank 0
    plots: bool = True                # PNG plots at the end
    deterministic: bool = False       # torch.use_deterministic_algorithms (slower on GPU)
    threads: int = 0                  # torch CPU threads of each process (0: torch's default)


@dataclass
class EvalConfig:
    views: str = "single"             # single (1 centre crop x 1 clip) | multi (num_crops x num_clips)
    num_crops: int = 3
    num_clips: int = 2                # SS: 2, K400: 4
    batch_size: int = 8               # videos per step
    split: str = "val"                # "val" (data.val_list) or the path of another list file to evaluate


@dataclass
class TrainConfig:
    name: str = "custom"
    model: typing.Any = field(default_factory=lambda: _model_config({}))  # the arch's config dataclass
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def model_config(self):
        """The model config object of ``model.arch`` (``tdsclip.archs``): ``self.model``."""
        return self.model

    def to_dict(self) -> dict:
        """Plain nested dict (what checkpoints store and ``config.yaml`` holds)."""
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


CHOICES = {
    ("runtime", "amp"): ("bf16", "fp16", "off"),
    ("runtime", "on_nan"): ("stop", "skip"),
    ("runtime", "on_bad_video"): ("skip", "raise"),
    ("runtime", "save_frozen"): ("auto", "yes", "no"),
    ("eval", "views"): ("single", "multi"),
    ("data", "decoder"): ("auto", "dali", "pyav"),
    ("data", "train_aug"): ("auto", "ssv2", "kinetics", "none"),
    ("data", "dataset"): ("ssv2", "ssv1", "k400", "kinetics", "demo", "list"),
}
POSITIVE = {("data", "batch_size"), ("data", "repeated_aug"), ("optim", "epochs"), ("optim", "grad_accum"),
            ("runtime", "log_every"), ("eval", "num_crops"), ("eval", "num_clips"), ("eval", "batch_size")}


# ---------------------------------------------------------------------------------------------
# dict -> typed dataclass, with errors that name the key

def _model_config(values: dict):
    from tdsclip.archs import model_config_from_dict  # validates the section of its arch; errors name the key

    return model_config_from_dict(values)


def _build_section(cls, values: dict, section: str):
    kwargs = coerce_fields(cls, values, section)
    for key, value in kwargs.items():
        choices = CHOICES.get((section, key))
        if choices and value not in choices:
            raise ValueError(f"{section}.{key} must be one of {', '.join(choices)}, got {value!r}")
        if (section, key) in POSITIVE and value <= 0:
            raise ValueError(f"{section}.{key} must be positive, got {value!r}")
    return cls(**kwargs)


def from_dict(raw: dict) -> TrainConfig:
    raw = dict(raw)
    raw.pop("base", None)
    for key in raw:
        check_known(key, [f.name for f in dataclasses.fields(TrainConfig)])
    model = raw.get("model") or {}
    if not isinstance(model, dict):
        raise ValueError(f"config section 'model' must be a mapping of keys, got {type(model).__name__}")

    cfg = TrainConfig(
        name=str(raw.get("name", "custom")),
        model=_model_config(model),
        data=_build_section(DataConfig, raw.get("data"), "data"),
        optim=_build_section(OptimConfig, raw.get("optim"), "optim"),
        runtime=_build_section(RuntimeConfig, raw.get("runtime"), "runtime"),
        eval=_build_section(EvalConfig, raw.get("eval"), "eval"),
    )
    if len(cfg.optim.betas) != 2:
        raise ValueError(f"optim.betas must be two numbers, got {cfg.optim.betas!r}")
    cfg.optim.betas = [float(b) for b in cfg.optim.betas]
    if cfg.optim.warmup_epochs < 0 or cfg.optim.warmup_epochs > cfg.optim.epochs:
        raise ValueError(f"optim.warmup_epochs must be in [0, optim.epochs={cfg.optim.epochs}], "
                         f"got {cfg.optim.warmup_epochs} (shortening a run? set both, e.g. --epochs 2 "
                         "optim.warmup_epochs=0.5)")
    if cfg.data.batch_size % cfg.data.repeated_aug:
        raise ValueError(f"data.batch_size ({cfg.data.batch_size}) must be a multiple of data.repeated_aug "
                         f"({cfg.data.repeated_aug}): each video fills repeated_aug slots of the batch")
    return cfg


# ---------------------------------------------------------------------------------------------
# files

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def available_configs() -> list[str]:
    return sorted(n[:-5] for n in os.listdir(CONFIG_DIR) if n.endswith(".yaml"))


def config_path(name: str) -> str:
    """A shipped config name (``demo``, ``ssv2_b16``) or a path to a YAML file."""
    if os.path.sep in name or name.endswith((".yaml", ".yml")) or os.path.isfile(name):
        if not os.path.isfile(name):
            raise FileNotFoundError(f"config file {name!r} does not exist")
        return name
    path = os.path.join(CONFIG_DIR, f"{name}.yaml")
    if not os.path.isfile(path):
        raise ValueError(f"unknown config {name!r}; shipped configs: {', '.join(available_configs())} "
                         "(or give a path to a YAML file)")
    return path


def load_raw(name: str, _seen: tuple = ()) -> dict:
    """The YAML of ``name`` with its ``base:`` chain merged under it."""
    path = config_path(name)
    if os.path.abspath(path) in _seen:
        raise ValueError(f"config {name!r}: 'base' inheritance loops ({' -> '.join(_seen)})")
    raw = load_yaml(path)
    own_name = raw.get("name") or os.path.splitext(os.path.basename(path))[0]
    base = raw.pop("base", None)
    if base:
        base_raw = load_raw(base, _seen + (os.path.abspath(path),))
        own_arch = (raw.get("model") or {}).get("arch") if isinstance(raw.get("model"), dict) else None
        if own_arch is not None and own_arch != _arch_of(base_raw):  # another arch's model keys do not apply
            base_raw.pop("model", None)
        raw = deep_merge(base_raw, raw)
    raw["name"] = own_name
    return raw


def _arch_of(raw: dict) -> str:
    model = raw.get("model")
    return model.get("arch", "tdsclip") if isinstance(model, dict) else "tdsclip"


def load_config(name: str, overrides: list[str] | None = None) -> TrainConfig:
    raw = load_raw(name)
    apply_overrides(raw, list(overrides or []))
    return from_dict(raw)
