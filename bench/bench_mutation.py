"""Mutation testing (mutmut) of the code where a silent bug costs most; writes bench/results/mutation.json.

    python bench/bench_mutation.py                  # every group, about an hour on 2 cores
    python bench/bench_mutation.py --group split    # one group (the others' results are kept)
    python bench/bench_mutation.py --work W --collect   # score what a run with --work W left (interrupted too)
    bash bench/run_all mutation                     # the same through the benchmark runner

mutmut (a dev tool: ``pip install mutmut``) plants one small change ("mutant") at a time in a copy of
the code and runs the tests that execute the changed function; a mutant no test notices "survived".
Each group below is a few functions and the fast test files that exercise them, run in its own
scratch copy of the repository (``--work``, default a temporary folder) with the shared settings of
``[tool.mutmut]`` in pyproject.toml, so that a mutant in the split never waits for a training test.

The score of a group is killed / (mutants - equivalent): EQUIVALENT lists, by mutant, the survivors
that cannot change behaviour and why; any other survivor is listed in the results with its diff, to
be killed by a new test. Tests that start subprocesses (torchrun, ``transferlab serve``) import the
unmutated package and are left out of the runs (pyproject's ``pytest_add_cli_args``).
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections import Counter
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "mutation.json"
GOAL = 0.85

# group -> the file mutated, the functions scored (mutmut's mangled names: x_func, xǁClassǁmethod),
# and the tests run against its mutants
GROUPS: dict[str, dict] = {
    "callbacks": {
        "what": "EarlyStopping / ModelCheckpoint / ReduceLROnPlateau and the monitored-metric rules",
        "file": "src/transferlab/training/callbacks.py",
        "functions": ["x__resolve_mode", "x_monitored_value", "xǁ_Monitorǁ*", "xǁEarlyStoppingǁ*",
                      "xǁModelCheckpointǁ*", "xǁReduceLROnPlateauǁ*"],
        "tests": ["tests/test_train_callbacks.py"],
    },
    "split": {
        "what": "the stratified, seeded train/val split",
        "file": "src/transferlab/data/split.py",
        "functions": ["x_stratified_split"],
        "tests": ["tests/test_data_split.py", "tests/test_data_layout.py"],
    },
    "export_parity": {
        "what": "the export's parity check against PyTorch: inputs, comparison, verdict and refusal",
        "file": "src/transferlab/exporter.py",
        "functions": ["x__parity", "x__check_parity", "x__parity_line", "x_parity_inputs", "x__spread"],
        # the parity tests of test_export.py (the int8, TorchScript-format and exporter-fallback tests
        # run the same check and take most of the file's time)
        "tests": [f"tests/test_export.py::{t}" for t in (
            "test_onnx_export_metadata_parity_and_dynamic_batch", "test_onnx_parity_on_generated_images_without_data",
            "test_onnx_parity_falls_back_to_random_pixels", "test_parity_mismatch_refuses_the_export",
            "test_parity_mismatch_keeps_the_earlier_export", "test_cli_export_exits_non_zero_on_mismatch_unless_accepted",
            "test_torchscript_parity_mismatch_is_refused", "test_parity_compares_batch_n_and_batch_1",
            "test_parity_inputs_validation_then_given_images_then_random")],
    },
    "distributed": {
        "what": "DDP set-up and the metrics summed over ranks (the epoch loop's reductions)",
        "file": ["src/transferlab/training/distributed.py", "src/transferlab/training/loop.py"],
        "functions": ["x_setup", "x_cleanup", "x_barrier", "x_all_reduce_sum", "x_env_rank", "x_env_world_size",
                      "xǁTrainerǁtrain_one_epoch", "xǁTrainerǁevaluate"],
        "tests": ["tests/test_train_ddp.py"],
    },
    "compare_reuse": {
        "what": "compare: which recipes are reused, resumed, retrained or re-evaluated, and state.json",
        "file": "src/transferlab/comparison/runner.py",
        "functions": ["x__trained", "x__finished", "x__jsonable", "x__train_recipe", "x_compare", "x_check_requests",
                      "x_parse_models", "x_read_state", "x__write_state", "x__one_line"],
        "tests": ["tests/test_compare_reuse.py"],
    },
    "serve_limits": {
        "what": "the request body limit (Content-Length and bytes received) and its 413 answer",
        "file": "src/transferlab/serve/app.py",
        "functions": ["xǁBodyLimitMiddlewareǁ*", "x__send_json", "xǁUploadTooLargeǁ*"],
        "tests": ["tests/test_serve_limits.py"],
    },
}

# survivors that cannot change behaviour: mutant name -> why (checked by reading each diff)
EQUIVALENT: dict[str, str] = {
    "transferlab.serve.app.x__send_json__mutmut_22":
        'b"connection" -> b"CONNECTION": HTTP field names are case-insensitive (RFC 9110 5.1); servers lower-case them',
    "transferlab.serve.app.x__send_json__mutmut_24":
        'b"close" -> b"CLOSE": connection options are case-insensitive tokens (RFC 9110 7.6.1)',
    "transferlab.serve.app.xǁBodyLimitMiddlewareǁ__call____mutmut_46":
        "started = False -> None: only ever tested as `if not started`; both are false",
    "transferlab.comparison.runner.x__trained__mutmut_16":
        'checkpoint_path(run_dir, "best") -> checkpoint_path(run_dir): "best" is the default, the same path',
    "transferlab.comparison.runner.x__write_state__mutmut_7":
        "json.dumps(state, indent=2) -> indent=None: only the whitespace of state.json changes; every reader parses it",
    "transferlab.comparison.runner.x__write_state__mutmut_9":
        "json.dumps(state, indent=2) -> no indent: only the whitespace of state.json changes; every reader parses it",
    "transferlab.comparison.runner.x__write_state__mutmut_10":
        "json.dumps(state, indent=2) -> indent=3: only the whitespace of state.json changes; every reader parses it",
    "transferlab.comparison.runner.x_read_state__mutmut_11":
        '"utf-8" -> "UTF-8": codec names are case-insensitive',
    "transferlab.comparison.runner.x_check_requests__mutmut_9":
        'run_dir="runs" -> None: the check only validates options; TrainConfig requires a non-empty run_dir, and '
        'str(None) is one (the real run folder is checked when training starts)',
    "transferlab.comparison.runner.x_check_requests__mutmut_11":
        'run_dir="runs" dropped: the TrainConfig default is "runs", the same value',
    "transferlab.comparison.runner.x_check_requests__mutmut_13":
        'run_dir="runs" -> "XXrunsXX": any non-empty folder name passes the same checks; it is never created',
    "transferlab.comparison.runner.x_check_requests__mutmut_14":
        'run_dir="runs" -> "RUNS": any non-empty folder name passes the same checks; it is never created',
    "transferlab.comparison.runner.x_check_requests__mutmut_10":
        "model=name dropped: TrainConfig's checks never read the model name (it only names the run folder when "
        "--name is not given, and both names are plain); the recipe's own defaults come in through resolve()",
    "transferlab.data.split.x_stratified_split__mutmut_43":
        '"utf-8" -> "UTF-8": codec names are case-insensitive, the class-name bytes are the same',
    "transferlab.training.callbacks.xǁModelCheckpointǁon_epoch_end__mutmut_26":
        'checkpoint_path(directory, "best") -> checkpoint_path(directory): "best" is the default, same path',
    "transferlab.training.callbacks.xǁReduceLROnPlateauǁstate_dict__mutmut_10":
        "copy.deepcopy -> copy.copy of the scheduler's state_dict(): torch builds a new dict each call and "
        "replaces (never mutates) its list values, so the shallow copy holds the same values",
    "transferlab.exporter.x__spread__mutmut_1":
        "len(samples) <= n -> < n: with exactly n samples, linspace(0, n - 1, n) picks every index, the same list",
    "transferlab.exporter.x_parity_inputs__mutmut_32":
        "the random parity images' seed 0 -> 1: another fixed, equally uniform draw (only reproducibility is "
        "specified, and the tests check it)",
    "transferlab.exporter.x_parity_inputs__mutmut_41":
        "rng.integers(..., dtype=np.uint8) -> the default int64: another fixed draw of the same 0-255 values, "
        "which normalize() turns into float32 the same way",
    "transferlab.training.loop.xǁTrainerǁevaluate__mutmut_50": 'float("nan") -> float("NAN"): the same NaN',
    "transferlab.training.loop.xǁTrainerǁevaluate__mutmut_55": 'float("nan") -> float("NAN"): the same NaN',
    "transferlab.training.loop.xǁTrainerǁtrain_one_epoch__mutmut_50":
        "zero_grad(set_to_none=True) -> set_to_none=None: the gradients are zeroed in place instead of dropped; "
        "the next backward writes the same values",
    "transferlab.training.loop.xǁTrainerǁtrain_one_epoch__mutmut_51":
        "zero_grad(set_to_none=True) -> False: the gradients are zeroed in place instead of dropped; the next "
        "backward writes the same values",
    "transferlab.training.loop.xǁTrainerǁtrain_one_epoch__mutmut_89":
        "all_reduce_sum(..., self.device) -> None: the sums' tensor goes to the default device, which is the "
        "trainer's on a CPU machine (gloo); it would differ only on CUDA with nccl, which this machine cannot run",
    "transferlab.training.loop.xǁTrainerǁevaluate__mutmut_40":
        "all_reduce_sum(..., self.device) -> None: the sums' tensor goes to the default device, which is the "
        "trainer's on a CPU machine (gloo); it would differ only on CUDA with nccl, which this machine cannot run",
    "transferlab.exporter.x_parity_inputs__mutmut_1":
        "arrays = [] -> None: it is only tested for truth before being assigned, and None and [] are both false",
}

# a mutant whose tests fail is detected; mutmut's timeouts are rerun without a limit (see recheck)
DETECTED = ("killed", "timeout")
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped", 36: "timeout",
          24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout", 37: "caught by type check",
          -11: "segfault", -9: "segfault", None: "not checked"}


def module_of(path: str) -> str:
    return path.removeprefix("src/").removesuffix(".py").replace("/", ".")


def patterns(group: dict) -> list[str]:
    files = group["file"] if isinstance(group["file"], list) else [group["file"]]
    return [f"{module_of(f)}.{fn}__mutmut_*" for f in files for fn in group["functions"]]


def scratch_copy(work: Path, group: dict) -> Path:
    """The repository's src/, tests/ and pyproject.toml, with [tool.mutmut] narrowed to the group."""
    if work.exists():
        shutil.rmtree(work)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    for name in ("src", "tests"):
        shutil.copytree(ROOT / name, work / name, ignore=ignore)
    text = (ROOT / "pyproject.toml").read_text()
    base = tomllib.loads(text)["tool"]["mutmut"]
    files = group["file"] if isinstance(group["file"], list) else [group["file"]]
    cfg = {**base, "only_mutate": files, "pytest_add_cli_args_test_selection": group["tests"]}
    start = text.index("[tool.mutmut]")
    end = text.find("\n[", start + 1)
    section = "[tool.mutmut]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in cfg.items())
    (work / "pyproject.toml").write_text(text[:start] + section + (text[end:] if end != -1 else ""))
    return work


def run_group(name: str, group: dict, work: Path, children: int, collect: bool = False) -> dict:
    """Run mutmut on the group in a scratch copy under ``work`` and score it; ``collect``: only score
    what an earlier (possibly interrupted) run left in ``work/name``."""
    if collect:
        folder = work / name
        seconds = None
        returncode = None
    else:
        folder = scratch_copy(work / name, group)
        t0 = time.perf_counter()
        log = folder / "mutmut.log"
        with log.open("w") as f:
            proc = subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", str(children),
                                   *patterns(group)], cwd=folder, stdout=f, stderr=subprocess.STDOUT)
        seconds = time.perf_counter() - t0
        returncode = proc.returncode
    exit_codes: dict[str, int | None] = {}
    for meta in (folder / "mutants").rglob("*.meta"):
        exit_codes.update(json.loads(meta.read_text()).get("exit_code_by_key", {}))
    wanted = patterns(group)
    exit_codes = {k: v for k, v in exit_codes.items() if any(fnmatch.fnmatchcase(k, p) for p in wanted)}
    not_run = sorted(k for k, v in exit_codes.items() if v is None)  # an interrupted run: never tested
    statuses = {k: STATUS.get(v, "suspicious") for k, v in exit_codes.items() if v is not None}
    rechecked = {k: recheck(folder, k) for k, s in statuses.items() if s == "timeout"}
    statuses.update(rechecked)
    counts = Counter(statuses.values())
    survivors = sorted(k for k, s in statuses.items() if s not in DETECTED)
    equivalent = [k for k in survivors if k in EQUIVALENT]
    open_ = [k for k in survivors if k not in EQUIVALENT]
    scored = len(statuses) - len(equivalent)
    killed = sum(counts.get(s, 0) for s in DETECTED)
    result = {
        "what": group["what"], "functions": group["functions"], "tests": group["tests"],
        "mutants": len(statuses), "killed": killed, "equivalent": len(equivalent),
        "not_killed": len(open_), "statuses": dict(sorted(counts.items())),
        "score": round(killed / scored, 4) if scored else None,
        "seconds": None if seconds is None else round(seconds), "mutmut_exit_code": returncode,
        "not_run": len(not_run),
        "timeouts_rechecked": dict(Counter(rechecked.values())),
        "equivalent_mutants": [{"mutant": k, "why": EQUIVALENT[k], "diff": diff(folder, k)} for k in equivalent],
        "surviving_mutants": [{"mutant": k, "status": statuses[k], "diff": diff(folder, k)} for k in open_],
    }
    print(f"[{name}] {killed}/{scored} killed ({result['score']}), {len(equivalent)} equivalent, "
          f"{len(open_)} not killed" + (f", {len(not_run)} not run" if not_run else "")
          + ("" if seconds is None else f", {seconds:.0f} s") + f"; log: {folder / 'mutmut.log'}")
    for k in open_:
        print(f"    {statuses[k]}: {k}")
    return result


def recheck(folder: Path, mutant: str) -> str:
    """Run a mutant that mutmut stopped on its CPU-time limit once more, directly under pytest with
    no time limit: "killed" when its tests fail, "survived" when they pass. (Under mutmut's fork
    server, a child whose test fails has been seen to spin until the limit on this machine.)"""
    cfg = tomllib.loads((folder / "pyproject.toml").read_text())["tool"]["mutmut"]
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "--rootdir=.", *cfg.get("pytest_add_cli_args", []),
           *cfg["pytest_add_cli_args_test_selection"]]
    env = {**os.environ, "MUTANT_UNDER_TEST": mutant, "PYTHONPATH": str(folder / "mutants" / "src")}
    code = subprocess.run(cmd, cwd=folder / "mutants", env=env, capture_output=True).returncode
    return {0: "survived", 1: "killed"}.get(code, "suspicious")


def diff(folder: Path, mutant: str) -> str:
    """The changed lines of one mutant (``mutmut show``), without the file header."""
    out = subprocess.run([sys.executable, "-m", "mutmut", "show", mutant], cwd=folder, capture_output=True, text=True)
    lines = [ln for ln in out.stdout.splitlines()
             if re.match(r"^[-+](?![-+])", ln)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--group", choices=sorted(GROUPS), action="append", help="default: every group")
    p.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one, removed)")
    p.add_argument("--max-children", type=int, default=max(1, (os.cpu_count() or 2)), help="parallel mutants")
    p.add_argument("--collect", action="store_true",
                   help="run nothing: score what an earlier run left in --work (mutants it did not reach are "
                        "counted as not run, outside the score)")
    args = p.parse_args(argv)
    if args.collect and args.work is None:
        p.error("--collect needs the --work folder of the earlier run")
    try:
        import mutmut  # noqa: F401  (only whether it is installed)
    except ImportError:
        print("mutmut is not installed: pip install 'mutmut>=3.8'", file=sys.stderr)
        return 2
    names = args.group or list(GROUPS)
    previous = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    groups = dict(previous.get("groups", {}))
    work = args.work or Path(tempfile.mkdtemp(prefix="transferlab-mutation-"))
    try:
        for name in names:
            if args.collect and not (work / name / "mutants").is_dir():
                print(f"[{name}] nothing to collect in {work / name}")
                continue
            groups[name] = run_group(name, GROUPS[name], work, args.max_children, collect=args.collect)
            groups[name]["date"] = date.today().isoformat()
            write_results(groups)  # after each group: an interrupted run keeps the groups it finished
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    result = write_results(groups)
    killed, scored = result["killed"], result["non_equivalent"]
    print(f"\nmutation score {killed}/{scored} = {result['score']:.1%} (goal {GOAL:.0%}); written to {RESULTS}")
    return 0 if result["score"] is not None and result["score"] >= GOAL else 1


def write_results(groups: dict) -> dict:
    import mutmut

    groups = {k: groups[k] for k in GROUPS if k in groups}
    killed = sum(g["killed"] for g in groups.values())
    scored = sum(g["mutants"] - g["equivalent"] for g in groups.values())
    result = {
        "date": date.today().isoformat(),
        "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(),
                    "mutmut": getattr(mutmut, "__version__", "?")},
        "command": "python bench/bench_mutation.py  (bash bench/run_all mutation)",
        "goal": f">= {GOAL:.0%} of non-equivalent mutants killed",
        "killed": killed, "non_equivalent": scored,
        "equivalent": sum(g["equivalent"] for g in groups.values()),
        "score": round(killed / scored, 4) if scored else None,
        "groups": groups,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    return result


if __name__ == "__main__":
    sys.exit(main())
