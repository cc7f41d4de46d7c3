"""Model directories in the Hugging Face layout: ``config.json`` + ``model.safetensors``.

    model.save_pretrained("out/ssv2_b16")                 # any architecture of tdsclip.archs
    model = tdsclip.from_pretrained("out/ssv2_b16")       # a directory, or a hub id "org/repo"
    model.push_to_hub("org/repo")                         # huggingface_hub upload of those two files

``config.json`` holds ``{"arch", "model": <the architecture's config dict>, "class_names": [...],
"train_config": <the run's config, if saved by the trainer>, "format": 1, ...}``; the weights are the
model's whole ``state_dict`` (frozen backbone included, so loading never needs the backbone's own
weights: ``pretrained`` is stored as null and the activation it implied is written out). Loading
reads safetensors only: no pickled code runs.
"""
from __future__ import annotations

import json
import os
import tempfile

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = 1


def is_model_dir(path: str) -> bool:
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, CONFIG_NAME)) \
        and os.path.isfile(os.path.join(path, WEIGHTS_NAME))


def can_save(model) -> bool:
    """Whether ``model`` carries the config ``save_pretrained`` stores (every tdsclip.archs model does)."""
    return callable(getattr(model, "saveable_config", None)) or callable(getattr(getattr(model, "config", None),
                                                                                   "to_dict", None))


def model_config_dict(model) -> dict:
    """The config dict stored for ``model``: its architecture's ``to_dict()``, or ``saveable_config()``
    when the model defines one (TDS-CLIP resolves ``pretrained`` / ``quick_gelu`` there)."""
    if callable(getattr(model, "saveable_config", None)):
        return model.saveable_config()
    config = getattr(model, "config", None)
    if config is None or not callable(getattr(config, "to_dict", None)):
        raise TypeError(f"save_pretrained: {type(model).__name__} has no .config with to_dict() (tdsclip.archs contract)")
    values = dict(config.to_dict())
    values.setdefault("arch", getattr(config, "arch", "tdsclip"))
    return values


def save_pretrained(model, directory: str, class_names=None, train_config: dict | None = None,
                    extra: dict | None = None) -> str:
    """Writes ``directory/config.json`` and ``directory/model.safetensors`` (atomically, each through a
    temporary file); returns ``directory``."""
    from safetensors.torch import save_file

    os.makedirs(directory, exist_ok=True)
    values = model_config_dict(model)
    names = list(class_names if class_names is not None else getattr(model, "class_names", None) or [])
    record = {"format": FORMAT_VERSION, "arch": values.get("arch", "tdsclip"), "model": values, "class_names": names}
    if train_config:
        record["train_config"] = train_config
    record.update(extra or {})
    # safetensors wants contiguous tensors that share no memory
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    _atomic_write(os.path.join(directory, WEIGHTS_NAME), lambda path: save_file(state, path, metadata={"format": "pt"}))
    _atomic_write(os.path.join(directory, CONFIG_NAME),
                  lambda path: open(path, "w", encoding="utf-8").write(json.dumps(record, indent=1) + "\n"))
    return directory


def _atomic_write(path: str, write) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", dir=os.path.dirname(os.path.abspath(path)))
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def resolve(dir_or_hub_id: str, revision: str | None = None) -> str:
    """A local model directory, or the snapshot of a hub repository (``huggingface_hub.snapshot_download``
    of config.json + model.safetensors; honours HF_HUB_OFFLINE and the cache)."""
    if os.path.isdir(dir_or_hub_id):
        if not is_model_dir(dir_or_hub_id):
            raise FileNotFoundError(f"{dir_or_hub_id!r} is not a model directory (needs {CONFIG_NAME} and "
                                    f"{WEIGHTS_NAME}; `tdsclip convert` makes one from a published checkpoint)")
        return dir_or_hub_id
    if os.path.exists(dir_or_hub_id) or dir_or_hub_id.count("/") != 1:
        raise FileNotFoundError(f"{dir_or_hub_id!r} is neither a model directory nor a hub id 'org/name'")
    from huggingface_hub import snapshot_download

    try:
        path = snapshot_download(dir_or_hub_id, revision=revision, allow_patterns=[CONFIG_NAME, WEIGHTS_NAME])
    except Exception as exc:  # offline without a cached copy, no such repository, no access
        raise FileNotFoundError(f"cannot fetch {dir_or_hub_id!r} from the Hugging Face hub "
                                f"({type(exc).__name__}: {exc})") from exc
    if not is_model_dir(path):
        raise FileNotFoundError(f"hub repository {dir_or_hub_id!r} has no {CONFIG_NAME} + {WEIGHTS_NAME}")
    return path


def read_config(directory: str) -> dict:
    path = os.path.join(directory, CONFIG_NAME)
    with open(path, encoding="utf-8") as f:
        try:
            record = json.load(f)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(record, dict) or not isinstance(record.get("model"), dict):
        raise ValueError(f"{path}: expected a mapping with a 'model' section (a tdsclip model directory)")
    return record


def read_weights(directory: str) -> dict:
    from safetensors.torch import load_file

    return load_file(os.path.join(directory, WEIGHTS_NAME), device="cpu")


def from_pretrained(dir_or_hub_id: str, *, device="cpu", overrides: list[str] | None = None,
                    revision: str | None = None, strict: bool = True):
    """The model saved in a directory (or hub repository) by :func:`save_pretrained`, in eval mode on
    ``device``; ``overrides``: ``key=value`` strings for its config (``fused_ops=false``).
    ``model.class_names`` holds the stored class names."""
    from .archs import build_model, model_config_from_dict

    directory = resolve(dir_or_hub_id, revision)
    record = read_config(directory)
    config = model_config_from_dict(record["model"])
    if overrides:
        config.override(list(overrides))
    model = build_model(config)
    result = model.load_state_dict(read_weights(directory), strict=False)
    if strict and (result.missing_keys or result.unexpected_keys):
        raise ValueError(f"{directory}/{WEIGHTS_NAME} does not match the model of its {CONFIG_NAME}: missing "
                         f"{sorted(result.missing_keys)[:8]}, unexpected {sorted(result.unexpected_keys)[:8]}")
    names = list(record.get("class_names") or [])
    model.class_names = names
    if names and callable(getattr(model, "set_class_names", None)):
        model.set_class_names(names)
    return model.to(device).eval()


def keep_if_best(model, directory: str, top1: float, **record) -> bool:
    """Saves ``model`` to ``directory`` when ``top1`` beats the ``val_top1`` stored there (or nothing is);
    the trainer's best-model hook. ``record``: class_names, train_config and extra fields (epoch, ...).
    The score lives in the directory's config.json, so a resumed run keeps comparing against it."""
    path = os.path.join(directory, CONFIG_NAME)
    if is_model_dir(directory):
        try:
            best = float(read_config(directory).get("val_top1", float("-inf")))
        except (ValueError, TypeError):
            best = float("-inf")
        if not top1 > best:
            return False
    class_names = record.pop("class_names", None)
    train_config = record.pop("train_config", None)
    save_pretrained(model, directory, class_names=class_names, train_config=train_config,
                    extra={"val_top1": float(top1), **record})
    return os.path.isfile(path)


def checkpoint_state(dir_or_hub_id: str) -> dict:
    """A model directory in the shape of a training checkpoint (``config``, ``model``, ``class_names``),
    so that ``tdsclip eval DIR`` runs on it: the run's config when the trainer saved it, else the
    defaults with the directory's model section (give the data with ``data.root=...`` overrides)."""
    directory = resolve(dir_or_hub_id)
    record = read_config(directory)
    config = dict(record.get("train_config") or {"name": os.path.basename(os.path.normpath(directory))})
    config["model"] = record["model"]
    return {"config": config, "model": read_weights(directory), "class_names": list(record.get("class_names") or []),
            "global_step": int(record.get("global_step") or 0), "epoch": int(record.get("epoch") or 0)}


def push_to_hub(model, repo_id: str, *, class_names=None, private: bool | None = None, token: str | None = None,
                commit_message: str = "Upload tdsclip model", revision: str | None = None) -> str:
    """Creates ``repo_id`` if needed and uploads config.json + model.safetensors (huggingface_hub);
    returns the commit URL (or whatever ``upload_folder`` returns)."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        save_pretrained(model, tmp, class_names=class_names)
        return api.upload_folder(repo_id=repo_id, folder_path=tmp, commit_message=commit_message, revision=revision)


class PretrainedMixin:
    """``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` methods for an architecture's model
    class (the functions above, which work for every architecture in tdsclip.archs)."""

    def save_pretrained(self, directory: str, class_names=None, **kwargs) -> str:
        return save_pretrained(self, directory, class_names=class_names, **kwargs)

    def push_to_hub(self, repo_id: str, **kwargs) -> str:
        return push_to_hub(self, repo_id, **kwargs)

    @classmethod
    def from_pretrained(cls, dir_or_hub_id: str, **kwargs):
        model = from_pretrained(dir_or_hub_id, **kwargs)
        if not isinstance(model, cls):
            raise TypeError(f"{dir_or_hub_id!r} holds a {type(model).__name__}, not a {cls.__name__}; "
                            "use tdsclip.from_pretrained for any architecture")
        return model
