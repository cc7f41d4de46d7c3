from .module import TDAdapter
from .reference import td_adapter_reference
from .interface import td_adapter

__all__ = ["TDAdapter", "td_adapter", "td_adapter_reference"]
