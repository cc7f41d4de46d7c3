"""Op 1: temporal max-difference ``x - maxpool_t(x)`` (+ channel-mean mix); see interface.py."""
from .interface import temporal_max_diff
from .reference import temporal_max_diff_reference

__all__ = ["temporal_max_diff", "temporal_max_diff_reference"]
