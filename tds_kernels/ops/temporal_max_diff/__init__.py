from ... import _dispatch
from .reference import temporal_max_diff_reference

_dispatch.register("temporal_max_diff", "reference", temporal_max_diff_reference)


def temporal_max_diff(x, kernel_size=3, mix=False, backend=None):  # placeholder until the fused op lands
    return temporal_max_diff_reference(x, kernel_size, mix)
