"""The README's two set-up commands are the contract with users and with CI: keep them true."""
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _bash_blocks():
    return re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


def test_readme_has_the_two_setup_commands():
    blocks = [b.strip() for b in _bash_blocks()[:2]]
    assert blocks == [
        "bash scripts/install.sh && .venv/bin/tdsclip demo",
        "bash scripts/install.sh && .venv/bin/python -m pytest -q tests",
    ], f"README quick-start commands changed: {blocks}"


def test_ci_runs_the_readme_test_command():
    test_cmd = [b.strip() for b in _bash_blocks()[:2]][1]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_cmd in [line.strip() for line in ci], ".ci/run must run the README's test command verbatim"


def test_install_script_builds_without_isolation():
    text = (ROOT / "scripts" / "install.sh").read_text()
    assert "--no-build-isolation -e ." in text
