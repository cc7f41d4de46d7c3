"""The training configuration: the model config plus data / optim / runtime / eval sections.

A run is described by one YAML file (shipped ones live in ``tdsclip/configs/``; ``--config demo``
names ``tdsclip/configs/demo.yaml``, anything with a ``/`` or ``.yaml`` is a path) with optional
``base: <other config>`` inheritance, then ``key=value`` overrides from the command line.
Sections other than ``model`` are typed dataclasses below: an unknown key or a value of the
wrong type is an error naming the key. The ``model`` section is handed to the config class of its
``arch`` (``tdsclip.archs``; ``tdsclip.config.TDSCLIPConfig`` by default), which validates it; a
config whose ``model.arch`` differs from its base's does not inherit the base's ``model`` section.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from dataclasses import dataclass, field

import yaml

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
    model: dict = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def model_config(self):
        """The model config object of ``model.arch`` (``tdsclip.archs``)."""
        from tdsclip.archs import model_config_from_dict

        return model_config_from_dict(self.model)

    def to_dict(self) -> dict:
        """Plain nested dict (what checkpoints store and ``config.yaml`` holds)."""
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


CHOICES = {
    ("runtime", "amp"): ("bf16", "fp16", "off"),
    ("runtime", "on_nan"): ("stop", "skip"),
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

def _coerce(value, tp, where: str):
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], where)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "on", "false", "no", "off"):
            return value.lower() in ("true", "yes", "on")
        raise TypeError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise TypeError(f"{where}: expected an integer, got {value!r}")
        return int(value)
    if tp is float:
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if value is None:
            return ""
        if isinstance(value, bool):  # YAML 1.1 reads a bare off/on as a boolean (amp: off)
            return "on" if value else "off"
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise TypeError(f"{where}: expected a string, got {value!r}")
        return str(value)
    if tp in (list, dict):
        if not isinstance(value, tp):
            raise TypeError(f"{where}: expected a {tp.__name__}, got {value!r}")
        return value
    return value


def _unknown(key: str, known, where: str) -> ValueError:
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ValueError(f"unknown config key {where}{key!r}{hint}; known keys: {', '.join(sorted(known))}")


def _build_section(cls, values: dict, section: str):
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise TypeError(f"config section {section!r} must be a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            raise _unknown(key, names, f"{section}.")
        kwargs[key] = _coerce(value, hints[key], f"{section}.{key}")
        choices = CHOICES.get((section, key))
        if choices and kwargs[key] not in choices:
            raise ValueError(f"{section}.{key} must be one of {choices}, got {kwargs[key]!r}")
        if (section, key) in POSITIVE and kwargs[key] <= 0:
            raise ValueError(f"{section}.{key} must be positive, got {kwargs[key]!r}")
    return cls(**kwargs)


def from_dict(raw: dict) -> TrainConfig:
    raw = dict(raw)
    raw.pop("base", None)
    top = {f.name for f in dataclasses.fields(TrainConfig)}
    for key in raw:
        if key not in top:
            raise _unknown(key, top, "")
    model = raw.get("model") or {}
    if not isinstance(model, dict):
        raise TypeError(f"config section 'model' must be a mapping, got {model!r}")
    from tdsclip.archs import model_config_from_dict  # validates the model section of its arch

    cfg = TrainConfig(
        name=str(raw.get("name", "custom")),
        model=model_config_from_dict(model).to_dict(),
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
    with open(path, encoding="utf-8") as f:
        raw = yaml.safe_load(f) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"config {path!r} must hold a mapping at the top level")
    own_name = raw.get("name") or os.path.splitext(os.path.basename(path))[0]
    base = raw.pop("base", None)
    if base:
        base_raw = load_raw(base, _seen + (os.path.abspath(path),))
        if _arch(raw) != _arch(base_raw):  # another architecture's model fields would not apply
            base_raw.pop("model", None)
        raw = deep_merge(base_raw, raw)
    raw["name"] = own_name
    return raw


def _arch(raw: dict) -> str:
    model = raw.get("model")
    return model.get("arch", "tdsclip") if isinstance(model, dict) else "tdsclip"


def load_config(name: str, overrides: list[str] | None = None) -> TrainConfig:
    raw = load_raw(name)
    apply_overrides(raw, list(overrides or []))
    return from_dict(raw)
