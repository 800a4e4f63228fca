"""Ament-style lint (flake8 + pep257 rules, via ruff configured in ruff.toml)."""

from pathlib import Path
import shutil
import subprocess
import sys

REPO = Path(__file__).resolve().parents[1]


def test_ruff_clean():
    ruff = Path(sys.executable).with_name('ruff')
    exe = str(ruff) if ruff.exists() else shutil.which('ruff')
    assert exe, 'ruff is not installed (make venv installs it)'
    result = subprocess.run([exe, 'check', '--no-cache', str(REPO)], capture_output=True,
                            text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
