"""Op 4: CLS token shift (half the channels from frame t+1, half from t-1); see interface.py."""
from .interface import cls_token_shift
from .reference import cls_token_shift_reference

__all__ = ["cls_token_shift", "cls_token_shift_reference"]
