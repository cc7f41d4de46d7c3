"""DiST through the shared framework: zero-shot logits from class names, and a tiny training run of
the shared trainer (class names set first, checkpoint saved, weights reloaded by eval's loader)."""
import os

import pytest
import torch
import torch.nn.functional as F

from tdsclip.dist import DiSTConfig, build_model
from tdsclip.engine.config import from_dict
from tdsclip.engine.datasource import TensorDataSource
from tdsclip.engine.distributed import DistInfo
from tdsclip.engine.trainer import Trainer

MODEL = dict(arch="dist", backbone="tiny", image_size=64, num_frames=4, num_classes=3, temporal_dim=8,
             integration_dim=32, pooling_layers=1)


def clips(B=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (B, 4, 5, 3, 64, 64), dtype=torch.uint8, generator=g)


def test_zero_shot_logits_are_scaled_cosines_with_the_names_text_embeddings():
    torch.manual_seed(0)
    model = build_model(DiSTConfig.from_dict(MODEL)).eval()
    x = clips()
    names = ["archery", "playing_cello", "surfing water", "yawning"]      # any number of names
    logits = model.zero_shot_logits(x, names)
    assert logits.shape == (2, 4) and torch.isfinite(logits).all()
    with torch.no_grad():
        video = F.normalize(model.forward_features(x), dim=-1)
        text = F.normalize(model.text(["archery", "playing cello", "surfing water", "yawning"]), dim=-1)
    torch.testing.assert_close(logits, model.logit_scale * video @ text.t())
    assert logits.abs().max() <= model.logit_scale + 1e-4
    # the columns follow the names
    torch.testing.assert_close(model.zero_shot_logits(x, names[::-1]), logits.flip(-1))
    # with the training classes' names, zero-shot logits are the model's own logits
    model.set_class_names(names[:3])
    torch.testing.assert_close(model(x), model.zero_shot_logits(x, names[:3]))
    assert model.supports_zero_shot


def test_zero_shot_needs_names():
    model = build_model(DiSTConfig.from_dict(MODEL))
    with pytest.raises(ValueError, match="non-empty list of strings"):
        model.zero_shot_logits(clips(), [])


def test_tiny_training_run_through_the_shared_trainer(tmp_path):
    from tdsclip.engine.state import load_model_state

    torch.manual_seed(0)
    cfg = from_dict({
        "name": "dist_tiny", "model": MODEL, "data": {"batch_size": 4},
        "optim": {"epochs": 1, "warmup_epochs": 0, "lr": 1e-3},
        "runtime": {"output": str(tmp_path), "amp": "off", "log_every": 1, "progress": False},
    })
    model = build_model(cfg.model_config())
    model.set_class_names(["pushing", "pulling", "lifting"])   # as tdsclip.train does before training
    text_before = model.class_text.clone()
    x = clips(B=8, seed=1)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    data = TensorDataSource((x, y), (x[:4], y[:4]), 4, seed=0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    result = Trainer(cfg, model, data, DistInfo(), log=lambda *a: None).fit()
    assert result.checkpoint and os.path.isfile(result.checkpoint)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert changed == trainable                                 # every trainable weight learned, nothing frozen moved
    torch.testing.assert_close(model.class_text, text_before)  # the text embeddings are fixed targets
    # the checkpoint rebuilds the same model (frozen towers included: no pretrained weights)
    state = torch.load(result.checkpoint, map_location="cpu", weights_only=False)
    torch.manual_seed(123)
    again = build_model(cfg.model_config())
    load_model_state(again, state["model"])
    model.eval(), again.eval()
    with torch.no_grad():
        torch.testing.assert_close(again(x[:2]), model(x[:2]))
