"""Frame folders (extracted JPEG frames, the published Something-Something input) through DALI's image
decoder: the same clips as the PIL path, on the CPU here and on the GPU (nvJPEG) where one exists."""
import numpy as np
import pytest
import torch

from tdsclip.data import VideoClipLoader, build_dataset, dali_available
from test_data_common import needs_dali

S, T = 32, 4


def _frame_folders(root, num_videos=4, size=(40, 56)):
    """Textured frames (a moving gradient plus noise), so crops, flips and RandAugment ops all show."""
    from PIL import Image

    rng = np.random.default_rng(0)
    lines = []
    for v in range(num_videos):
        d = root / f"v{v}"
        d.mkdir()
        n = 9 + 3 * v
        yy, xx = np.mgrid[0:size[0], 0:size[1]]
        for i in range(n):
            base = (xx * 4 + yy * 2 + 9 * i + 40 * v) % 256
            img = np.stack([base, (base * 3) % 256, 255 - base], -1) + rng.integers(0, 20, (*size, 3))
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(d / f"img_{i + 1:05d}.jpg", quality=90)
        lines.append(f"v{v} {n} {v % 2}\n")
    (root / "train.txt").write_text("".join(lines))
    return build_dataset("list", "train", str(root))


def _batches(ds, **kw):
    ld = VideoClipLoader(ds, 2, T, "train", S, num_workers=0, shuffle=False, **kw)
    ld.set_epoch(0)
    return ld, list(ld)


def test_dali_cpu_decodes_frame_folders_like_pil(tmp_path):
    needs_dali()
    ds = _frame_folders(tmp_path)
    dali, out_dali = _batches(ds, backend="dali", dali_threads=2)
    assert dali.path == "dali-cpu" and dali._image_runner is not None and dali._runner is None
    _, out_pil = _batches(ds, backend="pyav")
    assert len(out_dali) == len(out_pil) == 2
    for (cd, ld), (cp, lp) in zip(out_dali, out_pil):
        assert cd.shape == cp.shape == (4, T, 5, 3, S, S) and torch.equal(ld, lp)
        d = (cd.int() - cp.int()).abs().float()
        # same frames, crops, flips and ops; only JPEG decoding and resampling rounding may differ
        assert d.mean() < 0.5 and (d > 4).float().mean() < 0.01, (d.mean(), d.max())


def test_auto_uses_dali_for_frame_folders_on_cpu(tmp_path):
    needs_dali()
    ds = _frame_folders(tmp_path, num_videos=2)
    ld, out = _batches(ds, backend="auto")
    assert ld.path == "dali-cpu" and ld._image_runner is not None
    assert out[0][0].shape == (4, T, 5, 3, S, S)


def test_unreadable_frame_falls_back_and_is_reported(tmp_path):
    """A corrupt JPEG fails the DALI batch; the batch is re-run on the PIL path, which skips that video."""
    needs_dali()
    ds = _frame_folders(tmp_path, num_videos=2)
    (tmp_path / "v1" / "img_00003.jpg").write_bytes(b"not a jpeg")
    with pytest.warns(UserWarning):
        ld, out = _batches(ds, backend="dali", dali_threads=2)
    assert ld.skipped >= 1 and any("v1" in p for p, _ in ld.skipped_files)
    assert sum(c.shape[0] for c, _ in out) == 2  # video 0's two copies still arrive


@pytest.mark.skipif(not (torch.cuda.is_available() and dali_available()), reason="needs a CUDA GPU and DALI")
def test_dali_gpu_decodes_frame_folders(tmp_path):  # pragma: no cover - runs only where a GPU exists
    ds = _frame_folders(tmp_path)
    ld = VideoClipLoader(ds, 2, T, "train", S, num_workers=0, shuffle=False, device="cuda")
    assert ld.path == "dali-gpu"
    ld.set_epoch(0)
    gpu = list(ld)
    _, ref = _batches(ds, backend="pyav")
    for (cg, lg), (cp, lp) in zip(gpu, ref):
        assert cg.device.type == "cuda" and torch.equal(lg.cpu(), lp)
        assert (cg.cpu().int() - cp.int()).abs().float().mean() < 2.0  # nvJPEG's IDCT may round differently
