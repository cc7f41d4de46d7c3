"""Extra op (issue #5): the side block's MLP, BatchNorm → Linear → GELU → Linear, keeping only its input
for backward; see interface.py."""
from .interface import bn_mlp, bn_mlp_modules, side_mlp
from .reference import bn_mlp_reference

__all__ = ["bn_mlp", "bn_mlp_modules", "bn_mlp_reference", "side_mlp"]
