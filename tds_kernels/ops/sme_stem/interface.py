"""Placeholder: the functional fused op is being written. Only the reference backend exists."""
from ... import _dispatch
from . import reference

_dispatch.register("sme_stem", "reference", None)


def sme_stem(*args, **kwargs):
    raise NotImplementedError("sme_stem: fused backends are not written yet")
