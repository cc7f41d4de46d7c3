"""The toy video classifier the engine tests train: a frozen Linear, a BatchNorm (running statistics to
save and restore) and a head, on the (B, T, 5, 3, H, W) uint8 clips the trainer feeds. Small enough that
a training run takes a fraction of a second, so the engine tests (checkpoints, signals, DDP) test the
engine and not the model. One definition, imported by those tests (and pickled by name into DDP workers)."""
from torch import nn


class ToyVideoNet(nn.Module):
    def __init__(self, num_classes=4):
        super().__init__()
        self.frozen = nn.Linear(12, 16)
        self.frozen.requires_grad_(False)
        self.bn = nn.BatchNorm1d(16)
        self.head = nn.Linear(16, num_classes)

    def forward(self, clips):  # (B, T, 5, 3, H, W)
        x = clips.float().mean(dim=(-1, -2)).flatten(1)[:, :12] / 255
        return self.head(self.bn(self.frozen(x)))
