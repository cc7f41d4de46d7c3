"""Backend selection (tds_kernels._dispatch) as seen through the public ops.

Automatic choice, the TDS_KERNELS_BACKEND override, the backend= override, errors for unknown or
unavailable backends (with the install command), the warn-once downgrade, and
`python -m tds_kernels.info`.
"""
from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest
import torch

import tds_kernels
from tds_kernels import _dispatch, _ext
from tds_kernels.ops.registry import OPS as REGISTRY

HAS_EXT = _ext.has_extension()
NEED_EXT = pytest.mark.skipif(not HAS_EXT, reason="tds_kernels._C is not built (pip install --no-build-isolation -e .)")
INSTALL_CMD = "pip install --no-build-isolation -e ."



def _call_of(spec):
    """A call of the op's public function on its small example input (validate.example()): the first output."""
    def call(backend=None):
        out = getattr(spec.load(), spec.exports[0])(**spec.submodule("validate").example(), backend=backend)
        return out[0] if isinstance(out, tuple) else out
    return call


# op name -> a call of its public function on a small CPU input, for every op of the registry
CALLS = {spec.name: _call_of(spec) for spec in REGISTRY}
OPS = list(CALLS)


@pytest.fixture
def spies(monkeypatch):
    """Wrap every registered implementation of our ops; returns the list of (op, backend) that ran."""
    ran = []
    for op in OPS:
        for name, fn in list(_dispatch._IMPLS[op].items()):
            def spy(*args, _fn=fn, _op=op, _name=name, **kwargs):
                ran.append((_op, _name))
                return _fn(*args, **kwargs)
            monkeypatch.setitem(_dispatch._IMPLS[op], name, spy)
    monkeypatch.delenv(_dispatch.ENV_VAR, raising=False)
    return ran


@pytest.fixture
def no_extension(monkeypatch):
    """Make the compiled extension look missing (as after a pure-Python install)."""
    monkeypatch.setattr(_ext, "_C", None)
    monkeypatch.setattr(_ext, "_LOAD_ERROR", "ImportError: simulated by the test")
    monkeypatch.setattr(_dispatch, "_WARNED", set())


@pytest.mark.parametrize("op", OPS)
def test_all_backends_registered(op):
    assert set(tds_kernels.implementations()[op]) == {"reference", "cpu", "cuda", "triton"}


@NEED_EXT
@pytest.mark.parametrize("op", OPS)
def test_auto_picks_cpu_kernel_on_cpu(op, spies):
    assert tds_kernels.resolve(op, None, torch.device("cpu")) == "cpu"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the best backend: no downgrade warning
        CALLS[op]()
    assert spies == [(op, "cpu")]


@pytest.mark.parametrize("op", OPS)
def test_env_var_overrides_auto(op, spies, monkeypatch):
    monkeypatch.setenv(_dispatch.ENV_VAR, "reference")
    CALLS[op]()
    monkeypatch.setenv(_dispatch.ENV_VAR, "triton")  # TRITON_INTERPRET=1 (conftest): runs on CPU tensors
    CALLS[op]()
    assert spies == [(op, "reference"), (op, "triton")]


@pytest.mark.parametrize("op", OPS)
def test_backend_argument_overrides_env_var(op, spies, monkeypatch):
    monkeypatch.setenv(_dispatch.ENV_VAR, "triton")
    CALLS[op](backend="reference")
    CALLS[op](backend="auto")  # an explicit "auto" is the automatic choice, whatever the variable says
    assert spies[0] == (op, "reference")
    assert spies[1][1] == ("cpu" if HAS_EXT else "reference")


@pytest.mark.parametrize("op", OPS)
def test_env_var_auto_means_automatic(op, spies, monkeypatch):
    monkeypatch.setenv(_dispatch.ENV_VAR, "auto")
    CALLS[op]()
    assert spies == [(op, "cpu" if HAS_EXT else "reference")]


@pytest.mark.parametrize("op", OPS)
def test_invalid_backend_name(op, monkeypatch):
    with pytest.raises(ValueError, match="'cudnn'"):
        CALLS[op](backend="cudnn")
    monkeypatch.setenv(_dispatch.ENV_VAR, "gpu")
    with pytest.raises(ValueError, match=_dispatch.ENV_VAR):
        CALLS[op]()


@pytest.mark.parametrize("op", OPS)
def test_forced_missing_extension_names_install_command(op, no_extension):
    with pytest.raises(RuntimeError, match=f"backend 'cpu' was requested.*{INSTALL_CMD}") as info:
        CALLS[op](backend="cpu")
    assert op in str(info.value)


@pytest.mark.parametrize("op", OPS)
def test_forced_backend_for_wrong_device(op):
    with pytest.raises(RuntimeError, match="'cuda' backend runs cuda tensors"):
        CALLS[op](backend="cuda")


@pytest.mark.parametrize("op", OPS)
def test_forced_triton_on_cpu_needs_interpreter(op, monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        CALLS[op](backend="triton")


@pytest.mark.parametrize("op", OPS)
def test_downgrade_warns_once(op, spies, no_extension):
    with pytest.warns(RuntimeWarning, match=f"{op} on cpu: using the 'reference' backend") as record:
        y1 = CALLS[op]()
    assert sum(issubclass(w.category, RuntimeWarning) for w in record) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second call must stay quiet
        y2 = CALLS[op]()
    assert spies == [(op, "reference"), (op, "reference")]
    assert y1.shape == y2.shape


@NEED_EXT
@pytest.mark.parametrize("op", OPS)
def test_fused_and_reference_agree_through_dispatch(op):
    torch.manual_seed(0)
    y_auto = CALLS[op]()
    torch.manual_seed(0)
    y_ref = CALLS[op](backend="reference")
    torch.testing.assert_close(y_auto, y_ref)


def test_info_runs_and_lists_ops():
    env = {k: v for k, v in os.environ.items() if k != _dispatch.ENV_VAR}
    out = subprocess.run([sys.executable, "-m", "tds_kernels.info"], capture_output=True, text=True, env=env,
                         timeout=300, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.returncode == 0, out.stderr
    for op in OPS:
        rows = [line for line in out.stdout.splitlines() if line.startswith(op)]
        assert rows, f"{op} missing from:\n{out.stdout}"
        assert "reference=yes" in rows[0]
        if HAS_EXT:
            assert rows[0].split()[2] == "cpu", rows[0]  # automatic choice on CPU
    assert ("extension tds_kernels._C: built" if HAS_EXT else "NOT built") in out.stdout


def test_registry_lists_every_op_folder_and_exports():
    """The registry is the one list: every folder of tds_kernels/ops/ is registered, and every registered op's
    public names are tds_kernels' and its backends the dispatcher's."""
    import pkgutil

    import tds_kernels.ops

    folders = {m.name for m in pkgutil.iter_modules(tds_kernels.ops.__path__) if m.ispkg}
    assert folders == {spec.name for spec in REGISTRY}
    for spec in REGISTRY:
        for name in spec.exports:
            assert getattr(tds_kernels, name) is getattr(spec.load(), name) and name in tds_kernels.__all__
        for role in ("reference", "validate", "op", "triton", "interface"):
            assert spec.submodule(role) is not None  # the same files with the same roles in every op folder
    assert set(tds_kernels.implementations()) == {spec.name for spec in REGISTRY}


def test_readme_op_table_lists_every_registered_op():
    readme = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
    with open(readme, encoding="utf-8") as f:
        text = f.read()
    table = text[text.index("| op (`tds_kernels.…`)"):]
    table = table[:table.index("\n\n")]
    rows = [line for line in table.splitlines()[2:] if line.startswith("| ")]
    listed = {spec.name for spec in REGISTRY if any(f"`{name}(" in row for row in rows for name in spec.exports)}
    assert listed == {spec.name for spec in REGISTRY}, f"README op table misses {set(spec.name for spec in REGISTRY) - listed}"
