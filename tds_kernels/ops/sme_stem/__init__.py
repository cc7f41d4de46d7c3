from .module import SMEStem
from .reference import sme_stem_reference
from .interface import sme_stem

__all__ = ["SMEStem", "sme_stem", "sme_stem_reference"]
