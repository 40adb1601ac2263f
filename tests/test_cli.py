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


def test_the_stages_are_plain_functions_beside_their_modules():
    """``tl.train(...)`` used to be a module whose class was swapped to make it callable; now the
    stage functions are functions (help() and type checkers follow them) and their modules keep
    their own names."""
    import inspect

    import transferlab
    import transferlab.comparison
    import transferlab.evaluation
    import transferlab.exporter
    import transferlab.predictor
    import transferlab.training

    pairs = {"train": transferlab.training, "evaluate": transferlab.evaluation, "compare": transferlab.comparison,
             "export": transferlab.exporter, "predict": transferlab.predictor}
    for name, module in pairs.items():
        fn = getattr(transferlab, name)
        assert inspect.isfunction(fn) and fn is getattr(module, name), name
        assert type(module) is type(inspect)  # a plain module, no class swap
    assert "model" in inspect.signature(transferlab.train).parameters
