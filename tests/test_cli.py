"""The package and CLI basics: every command is listed, --version, the OpenMP default."""
from __future__ import annotations

import os
import subprocess
import sys

import transferlab
from transferlab.cli import COMMANDS, main


def test_help_lists_every_command(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out, f"command {name} missing from --help"


def test_version_via_python_m():
    res = subprocess.run([sys.executable, "-m", "transferlab", "--version"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and transferlab.__version__ in res.stdout


def _omp_policy(env_extra: dict) -> str:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | env_extra
    code = "import transferlab, os; print(os.environ['OMP_WAIT_POLICY'])"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60).stdout.strip()


def test_openmp_waits_passively_by_default_and_user_setting_wins():
    assert _omp_policy({}) == "PASSIVE"
    assert _omp_policy({"OMP_WAIT_POLICY": "ACTIVE"}) == "ACTIVE"


def test_stage_modules_are_callable():
    import transferlab.compare
    import transferlab.evaluate
    import transferlab.export
    import transferlab.predict
    import transferlab.train

    for mod in (transferlab.train, transferlab.evaluate, transferlab.compare, transferlab.export, transferlab.predict):
        assert callable(mod), mod.__name__
    assert transferlab.train is transferlab.__getattr__("train")
