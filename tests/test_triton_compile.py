"""Compile the Triton kernels for an H100 (sm_90) on a machine without a GPU.

The rest of the suite runs Triton kernels under TRITON_INTERPRET=1, which never lowers them: a kernel
can pass every interpreter test and still fail to compile (unsupported op, bad layout, too much
shared memory). Here each kernel goes through the real pipeline, ttir → ttgir → llir → ptx → cubin,
with ``triton.compile(ASTSource(...), target=GPUTarget("cuda", 90, 32))`` and the ptxas shipped with
Triton; no driver or GPU is involved.

Specs: the ``triton.py`` of every op of tds_kernels/ops/registry.py defines ``TRITON_COMPILE_SPECS``, a list of dicts

    name        unique test id
    kernel      the @triton.jit function
    signature   {argument: type} as triton.compile takes it ("*fp32", "i32", ..., "constexpr")
    constexprs  {argument: value} for the constexpr arguments
    options     (optional) dict for triton.compile, e.g. {"num_warps": 8}

and its kernels are compiled here; an op adds kernels by adding specs, not by editing this file.
The compile runs in one subprocess with TRITON_INTERPRET=0 (under the interpreter @triton.jit gives
objects the compiler cannot lower) and a throwaway cache directory, so nothing is a cache hit.
"""
from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys

import pytest

from tds_kernels.ops.registry import OPS

SM90_MAX_SHARED = 227 * 1024  # bytes of shared memory one block may use on sm_90


def _spec_modules() -> list[str]:
    return [f"{op.package}.triton" for op in OPS]


def _collect() -> list[tuple[str, str]]:
    """(module, spec name) for every registered spec; a module that fails to import is one failing entry."""
    out = []
    for mod in _spec_modules():
        try:
            specs = getattr(importlib.import_module(mod), "TRITON_COMPILE_SPECS", [])
        except Exception as exc:  # noqa: BLE001 - reported by the test below
            out.append((mod, f"<import error: {type(exc).__name__}>"))
            continue
        out.extend((mod, spec["name"]) for spec in specs)
    return out


SPECS = _collect()

# Runs in the subprocess: compiles every spec of the given modules, prints one JSON object.
_WORKER = r"""
import importlib, json, sys, traceback
out = {}
try:
    import triton
    from triton.compiler import ASTSource
    from triton.backends.compiler import GPUTarget
    try:
        from triton import knobs
        ptxas = knobs.nvidia.ptxas.path
    except ImportError:  # triton < 3.4: no knobs; compile() finds ptxas itself
        ptxas = "bundled"
    if not ptxas:
        raise FileNotFoundError("ptxas not found")
except Exception as exc:
    print(json.dumps({"__skip__": f"ptxas / Triton's CUDA backend unavailable: {type(exc).__name__}: {exc}"}))
    sys.exit(0)
target = GPUTarget("cuda", 90, 32)
for mod in sys.argv[1:]:
    try:
        specs = getattr(importlib.import_module(mod), "TRITON_COMPILE_SPECS", [])
    except Exception:
        out[f"{mod}:<import>"] = {"ok": False, "error": traceback.format_exc()}
        continue
    for spec in specs:
        key = f"{mod}:{spec['name']}"
        try:
            src = ASTSource(spec["kernel"], spec["signature"], constexprs=spec.get("constexprs"))
            k = triton.compile(src, target=target, options=spec.get("options"))
            out[key] = {"ok": True, "cubin_bytes": len(k.asm["cubin"]), "shared": int(k.metadata.shared),
                        "num_warps": int(k.metadata.num_warps), "ptx_has_entry": ".entry" in k.asm["ptx"]}
        except Exception:
            out[key] = {"ok": False, "error": traceback.format_exc()[-3000:]}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    env = dict(os.environ, TRITON_INTERPRET="0", TRITON_CACHE_DIR=str(tmp_path_factory.mktemp("triton_cache")))
    proc = subprocess.run([sys.executable, "-c", _WORKER, *_spec_modules()], capture_output=True, text=True,
                          env=env, timeout=900)
    assert proc.returncode == 0, f"compile worker crashed:\n{proc.stderr[-5000:]}"
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if "__skip__" in result:
        pytest.skip(result["__skip__"])
    return result


def test_every_registered_op_has_specs():
    names = [name for _, name in SPECS]
    for op in OPS:
        assert any(n.startswith(op.name) for n in names), f"{op.name}: no TRITON_COMPILE_SPECS named {op.name}_*"
    assert len(names) == len(set(names)), "spec names must be unique"


@pytest.mark.parametrize("module,name", SPECS, ids=[name for _, name in SPECS])
def test_compiles_for_sm90(compiled, module, name):
    assert not name.startswith("<import error"), f"{module} failed to import"
    res = compiled.get(f"{module}:{name}")
    assert res is not None, f"{name} was not compiled"
    assert res["ok"], f"{name} failed to compile for sm_90:\n{res['error']}"
    assert res["cubin_bytes"] > 0 and res["ptx_has_entry"]
    assert res["shared"] <= SM90_MAX_SHARED, f"{name} needs {res['shared']} B of shared memory"
