"""``tdsclip export --model DIR OUT.pt2``: ``torch.export`` of the eval model.

    tdsclip export --model models/ssv2_b16 ssv2_b16.pt2            # batch dimension dynamic
    python -c "import tds_kernels, torch; ep = torch.export.load('ssv2_b16.pt2'); print(ep.module()(clips))"

The exported graph keeps the fused TDS-CLIP ops as the custom ops they are (``tds.sme_stem_forward``,
``tds.td_adapter_forward``, ``tds.cls_token_shift``, ``tds.bn_mlp_forward``): ``import tds_kernels``
before ``torch.export.load`` registers them, and each runs on the backend the loading machine has.
The model is exported in eval mode (running BatchNorm statistics) on ``--device``; the input is
uint8 clips ``(B, T, 5, 3, H, W)`` with T and H = W from the model's config.

Exit status: 0 written, 2 bad arguments or a model that does not load.
"""
from __future__ import annotations

import argparse
import sys

import torch


def example_clips(config, batch: int = 2, device="cpu") -> torch.Tensor:
    size = config.resolved_image_size
    g = torch.Generator().manual_seed(0)
    clips = torch.randint(0, 256, (batch, config.num_frames, 5, 3, size, size), dtype=torch.uint8, generator=g)
    return clips.to(device)


def export_model(model, clips: torch.Tensor, dynamic_batch: bool = True):
    """The ``torch.export.ExportedProgram`` of ``model`` (put in eval mode) on inputs shaped like ``clips``;
    ``dynamic_batch``: the batch dimension is symbolic (any B >= 1)."""
    model.eval()
    shapes = ({0: torch.export.Dim("batch", min=1, max=4096)},) if dynamic_batch else None
    return torch.export.export(model, (clips,), dynamic_shapes=shapes)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="tdsclip export", description=__doc__.split("\n\n")[0],
                                epilog="exit status: 0 written, 2 bad arguments or model")
    p.add_argument("out", help="file to write (torch.export.save; conventionally .pt2)")
    p.add_argument("--model", required=True, help="model directory (config.json + model.safetensors) or hub id")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (where the example input lives)")
    p.add_argument("--static-batch", type=int, metavar="B", help="export for exactly B clips (default: dynamic)")
    args = p.parse_args(argv)
    from .hub import from_pretrained

    try:
        model = from_pretrained(args.model, device=args.device)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        print(f"export: error: {exc}", file=sys.stderr)
        return 2
    clips = example_clips(model.config, args.static_batch or 2, args.device)
    program = export_model(model, clips, dynamic_batch=args.static_batch is None)
    torch.export.save(program, args.out)
    ops = sorted({str(n.target) for n in program.graph.nodes
                  if n.op == "call_function" and str(n.target).startswith("tds.")})
    print(f"export: {args.model} -> {args.out} (custom ops: {', '.join(ops) or 'none'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
