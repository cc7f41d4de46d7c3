"""Packaging: what setup.py builds on which machine, the refusal to build without torch (pip's default
build isolation), the sdist's contents, and one version number.

Building a real wheel needs minutes of compiling, so .ci/run does that once (`python -m build`, the
wheel installed into a fresh venv, `pip wheel` with isolation refused); these tests ask setup.py's
decision function about machines they are not, and run setup.py in a subprocess where torch cannot be
imported (what pip's isolated build environment looks like).
"""
import os
import re
import runpy
import shutil
import subprocess
import sys
import tarfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETUP = runpy.run_path(os.path.join(ROOT, "setup.py"), run_name="setup_under_test")  # no setup() call
build_plan, package_version = SETUP["build_plan"], SETUP["package_version"]
NVCC = "/usr/local/cuda/bin/nvcc"


def test_no_torch_stops_the_build_with_what_to_do():
    plan = build_plan({}, None, None, None, False)
    assert plan.build_ext and plan.error
    assert "--no-build-isolation" in plan.error and "TDS_KERNELS_SKIP_EXT=1" in plan.error
    skip = build_plan({"TDS_KERNELS_SKIP_EXT": "1"}, None, None, None, False)
    assert not skip.build_ext and skip.error is None and package_version(skip, []) == SETUP["base_version"]()


@pytest.mark.parametrize("env, cuda, nvcc, gpu, with_cuda, local", [
    ({}, "13.0", NVCC, False, False, "torch2.14cpu"),          # no GPU: CPU kernels only
    ({}, "13.0", NVCC, True, True, "torch2.14cu130"),          # a GPU and nvcc: CUDA too
    ({}, "13.0", None, True, False, "torch2.14cpu"),           # no nvcc
    ({}, None, NVCC, True, False, "torch2.14cpu"),             # a CPU build of torch
    ({"TDS_KERNELS_FORCE_CUDA": "1"}, "13.0", NVCC, False, True, "torch2.14cu130"),  # CI, wheel builders
    ({"TDS_KERNELS_SKIP_CUDA": "1"}, "13.0", NVCC, True, False, "torch2.14cpu"),
    ({"TDS_KERNELS_SKIP_CUDA": "1", "TDS_KERNELS_FORCE_CUDA": "1"}, "13.0", NVCC, True, False, "torch2.14cpu"),
])
def test_which_kernels_are_built(env, cuda, nvcc, gpu, with_cuda, local):
    plan = build_plan(env, "2.14.1+cu130", cuda, nvcc, gpu)
    assert plan.error is None and plan.build_ext
    assert plan.with_cuda == with_cuda and plan.local_version == local
    assert package_version(plan, ["setup.py", "bdist_wheel"]) == f"{SETUP['base_version']()}+{local}"
    assert package_version(plan, ["setup.py", "sdist"]) == SETUP["base_version"]()  # source: plain version
    if not with_cuda and nvcc and cuda and not gpu:
        assert "TDS_KERNELS_FORCE_CUDA=1" in plan.reason  # says how to get the CUDA kernels anyway


@pytest.mark.parametrize("cuda, nvcc, missing", [(None, NVCC, "torch has no CUDA"), ("13.0", None, "nvcc not found")])
def test_forcing_cuda_where_it_cannot_build_is_an_error(cuda, nvcc, missing):
    plan = build_plan({"TDS_KERNELS_FORCE_CUDA": "1"}, "2.14.1", cuda, nvcc, False)
    assert plan.error and missing in plan.error


TOOLKIT_FILES = {"/usr/local/cuda-13.0/bin/nvcc", "/usr/local/cuda-13.0/include/crt/host_defines.h",
                 "/usr/local/cuda/bin/nvcc", "/usr/local/cuda/include/crt/host_defines.h"}


@pytest.mark.parametrize("env, on_path, real, home", [
    # a wrapper script on PATH (this machine): torch would guess /usr/local, whose include/ lacks crt/
    ({}, "/usr/local/bin/nvcc", "/usr/local/bin/nvcc", "/usr/local/cuda"),
    # a link on PATH into a toolkit: the toolkit it points into
    ({}, "/usr/bin/nvcc", "/usr/local/cuda-13.0/bin/nvcc", "/usr/local/cuda-13.0"),
    ({}, "/usr/local/cuda-13.0/bin/nvcc", "/usr/local/cuda-13.0/bin/nvcc", "/usr/local/cuda-13.0"),
    ({}, None, None, "/usr/local/cuda"),                            # no nvcc on PATH: the default folder
    ({"CUDA_HOME": "/opt/cuda"}, "/usr/local/bin/nvcc", None, "/opt/cuda"),   # the user's word wins
    ({"CUDA_PATH": "/opt/cuda"}, None, None, "/opt/cuda"),
])
def test_cuda_home_is_a_toolkit_folder_not_the_parent_of_a_wrapper(env, on_path, real, home):
    assert SETUP["cuda_home"](env, on_path, exists=TOOLKIT_FILES.__contains__,
                              realpath=lambda p: real) == home


def test_no_toolkit_anywhere_is_no_cuda_home():
    assert SETUP["cuda_home"]({}, "/usr/local/bin/nvcc", exists=lambda p: False, realpath=lambda p: p) is None


def _run_setup_without_torch(args, cwd, env=None):
    """setup.py as pip's isolated build environment runs it: torch cannot be imported."""
    code = ("import runpy, sys; sys.modules['torch'] = None; "  # a None entry makes `import torch` fail
            f"sys.argv = ['setup.py'] + {args!r}; runpy.run_path('setup.py', run_name='__main__')")
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def _source_tree(dst):
    """The files an sdist is made from (no build outputs, no virtual environment)."""
    patterns = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "*.so",
                                      "runs", "demo_data", ".pytest_cache", ".benchmarks")

    def ignore(folder, names):  # the top-level bench/ and tests/ (csrc/tests/ is a kernel source)
        top = {"bench", "tests"} & set(names) if os.path.samefile(folder, ROOT) else set()
        return set(patterns(folder, names)) | top

    shutil.copytree(ROOT, dst, ignore=ignore)
    return dst


def test_setup_without_torch_refuses_to_build_the_extension(tmp_path):
    tree = _source_tree(tmp_path / "src")
    out = _run_setup_without_torch(["build_ext"], tree)
    assert out.returncode != 0
    assert "torch is not importable" in out.stderr and "--no-build-isolation" in out.stderr
    assert "TDS_KERNELS_SKIP_EXT=1" in out.stderr
    assert not list((tree / "tds_kernels").glob("_C*.so"))
    skipped = _run_setup_without_torch(["--version"], tree, {"TDS_KERNELS_SKIP_EXT": "1"})
    assert skipped.returncode == 0, skipped.stderr
    assert skipped.stdout.strip().splitlines()[-1] == SETUP["base_version"]()


def test_sdist_holds_every_kernel_source_and_the_license(tmp_path):
    tree = _source_tree(tmp_path / "src")
    out = _run_setup_without_torch(["-q", "sdist", "-d", str(tmp_path / "dist")], tree)
    assert out.returncode == 0, out.stderr
    (archive,) = (tmp_path / "dist").glob("tds-*.tar.gz")
    assert archive.name == f"tds-{SETUP['base_version']()}.tar.gz"
    with tarfile.open(archive) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    csrc = {os.path.relpath(p, ROOT) for p in _walk(os.path.join(ROOT, "csrc"))}
    assert csrc and csrc <= names, sorted(csrc - names)
    assert any(n.endswith(".h") for n in csrc) and any(n.endswith(".cu") for n in csrc)
    assert {"LICENSE", "setup.py", "pyproject.toml", "MANIFEST.in", "tds_kernels/version.py",
            "tdsclip/configs/demo.yaml"} <= names
    assert not any(n.endswith((".so", ".o")) for n in names)


def _walk(top):
    for dirpath, _, files in os.walk(top):
        for f in files:
            yield os.path.join(dirpath, f)


def test_one_version_number():
    import tds_kernels
    import tdsclip

    base = SETUP["base_version"]()
    assert tds_kernels.__version__ == tdsclip.__version__ == base
    pyproject = open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8").read()
    assert re.search(r'^dynamic = \["version"\]', pyproject, flags=re.M)
    assert not re.search(r"^version\s*=", pyproject, flags=re.M)
    literals = [p for pkg in ("tds_kernels", "tdsclip") for p in _walk(os.path.join(ROOT, pkg))
                if p.endswith(".py") and re.search(r'^__version__\s*=\s*"', open(p, encoding="utf-8").read(), re.M)]
    assert [os.path.relpath(p, ROOT) for p in literals] == ["tds_kernels/version.py"]


def test_license_is_the_apache_2_text():
    text = open(os.path.join(ROOT, "LICENSE"), encoding="utf-8").read()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text and len(text) > 10_000
    assert 'license = "Apache-2.0"' in open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8").read()


def test_imported_packages_are_declared():
    pyproject = open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8").read().lower()
    requirements = open(os.path.join(ROOT, "requirements.txt"), encoding="utf-8").read().lower()
    for name in ("safetensors", "pillow", "einops", "pyyaml", "av", "numpy"):
        assert f'"{name}' in pyproject and name in requirements, name


def test_install_script_torch_pin_satisfies_the_requirement():
    script = open(os.path.join(ROOT, "scripts", "install.sh"), encoding="utf-8").read()
    pyproject = open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8").read()
    floor = tuple(int(x) for x in re.search(r'"torch>=(\d+)\.(\d+)"', pyproject).groups())
    pins = re.findall(r"torch==(\d+)\.(\d+)", script)
    assert pins and all(tuple(map(int, p)) >= floor for p in pins), (pins, floor)
