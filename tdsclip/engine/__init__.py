"""The training / evaluation engine behind ``tdsclip train|eval|demo``, one job per module:

config (the YAML training config), overrides (key=value), schedule (warm-up + cosine), optim (AdamW),
amp, checkpoint (atomic save, safe load, latest), state (which weights are saved), rng, sampler
(deterministic sharded order), datasource (the loop's data interface, in-memory source),
video_source (adapter to ``tdsclip.data``), distributed (torchrun / DDP), signals (SIGTERM/SIGINT),
metrics (JSON lines), progress (tqdm), plots, evaluation (multi-view arithmetic), trainer (the loop),
linear_probe (the order-blind baseline of the demo).
"""
