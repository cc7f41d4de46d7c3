"""Temporal adjacent difference x_t - x_{t-1} (or |x_t - x_{t+1}|) along frames; see interface.py."""
from .interface import temporal_adjacent_diff
from .reference import temporal_adjacent_diff_reference

__all__ = ["temporal_adjacent_diff", "temporal_adjacent_diff_reference"]
