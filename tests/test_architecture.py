"""The module table of docs/ARCHITECTURE.md matches the imports in src/, the data flows one way,
and the lean paths (CLI start-up, ONNX predict/serve) do not load PyTorch."""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "src" / "transferlab"
UTILITIES = {"errors", "choices", "_atomic", "_rows", "_html", "tta", "_progress", "_logging", "_lazy", "_callback", "_stats", "__version__", "transferlab"}


def _unit(path: Path) -> str:
    parts = path.relative_to(PKG).with_suffix("").parts
    return "transferlab" if parts[0] in ("__init__", "__main__") else parts[0]


def source_imports() -> dict[str, set[str]]:
    """transferlab top-level module -> the other transferlab modules it imports (lazy ones too)."""
    deps: dict[str, set[str]] = defaultdict(set)
    for f in PKG.rglob("*.py"):
        unit, pkg = _unit(f), list(f.relative_to(PKG).parent.parts)
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.level:
                base = pkg[: len(pkg) - (node.level - 1)]
                path = base + (node.module.split(".") if node.module else [])
                targets = [path[0]] if path else [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("transferlab."):
                targets = [node.module.split(".")[1]]
            elif isinstance(node, ast.Import):
                targets = [a.name.split(".")[1] for a in node.names if a.name.startswith("transferlab.")]
            deps[unit].update(t for t in targets if t != unit and t not in UTILITIES)
    return deps


def documented_imports() -> dict[str, set[str]]:
    text = (REPO / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    table = {}
    for m in re.finditer(r"^\| `transferlab\.(\w+)` \|.*\| ([^|]*) \|$", text, re.M):
        cell = m.group(2).strip()
        table[m.group(1)] = set() if cell == "-" else {c.strip() for c in cell.split(",")}
    return table


def test_architecture_table_matches_the_imports():
    real = source_imports()
    doc = documented_imports()
    modules = {u for u in real if u not in UTILITIES and u not in ("cli", "__main__")} | set(doc)
    assert doc, "no module table found in docs/ARCHITECTURE.md"
    for unit in sorted(modules):
        assert unit in doc, f"docs/ARCHITECTURE.md has no row for transferlab.{unit}"
        assert real.get(unit, set()) == doc[unit], f"transferlab.{unit}: imports {sorted(real.get(unit, set()))}, " \
                                                   f"documented {sorted(doc[unit])}"


def test_the_data_flows_one_way():
    """No import cycles between the top-level modules."""
    real = source_imports()
    seen: dict[str, int] = {}

    def visit(u: str, stack: list[str]) -> None:
        if seen.get(u) == 1:
            raise AssertionError(f"import cycle: {' -> '.join(stack + [u])}")
        if seen.get(u) == 2:
            return
        seen[u] = 1
        for d in real.get(u, ()):
            visit(d, stack + [u])
        seen[u] = 2

    for u in list(real):
        visit(u, [])


RUN_FOLDER_NAMES = {"config.json", "history.csv", "last_state.pt", "best.safetensors", "last.safetensors", "train.log",
                    "metrics.json", "predictions.csv", "model.onnx", "model.int8.onnx", "model.pt", "model.json"}


def test_only_runfolder_spells_run_folder_file_names():
    """Code (docstrings and CLI help aside) names run-folder files through transferlab.runfolder."""
    offenders = []
    for f in PKG.rglob("*.py"):
        if f.name == "runfolder.py" or "commands" in f.parts:
            continue
        tree = ast.parse(f.read_text(encoding="utf-8"))
        docs = {id(n.body[0].value) for n in ast.walk(tree)
                if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
                and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and id(node) not in docs and node.value in RUN_FOLDER_NAMES:
                offenders.append(f"{f.relative_to(PKG)}:{node.lineno}: {node.value!r}")
            if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant) \
                    and node.values[0].value == "eval-":
                offenders.append(f"{f.relative_to(PKG)}:{node.lineno}: f'eval-...'")
    assert not offenders, offenders


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", f"{code}\nimport sys; print(' '.join(sys.modules))"],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split())


def test_cli_parser_and_onnx_serving_path_do_not_import_torch():
    assert "torch" not in _modules_after("from transferlab.cli import build_parser; build_parser()")
    mods = _modules_after("import transferlab.serve, transferlab.predictor, transferlab.runtime, transferlab.runfolder")
    assert "torch" not in mods and "torchvision" not in mods and "timm" not in mods
