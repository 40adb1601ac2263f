"""``transferlab models [--json] [--layers RECIPE]``: list the model recipes (or one recipe's layers)."""
from __future__ import annotations

import argparse
import json
import sys
from importlib import resources
from typing import TypedDict

from rich.console import Console, JustifyMethod
from rich.table import Table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the recipes as JSON")
    parser.add_argument("--layers", metavar="RECIPE", default=None,
                        help="list a recipe's backbone layers with their indexes (for --unfreeze-from N) and blocks")


def _params(name: str) -> int | None:
    """Backbone parameter count, built without weights on the meta device (cheap, no memory)."""
    import torch

    from ..models import count_params, create_model  # (torch: see run())

    try:
        with torch.device("meta"):
            return count_params(create_model(name, 1000, pretrained=False).backbone)
    except Exception:  # noqa: BLE001 - a listing should never fail on one recipe
        return None


#: the listing's rows, written by tools/make_recipe_table.py from the registry and checked against it by
#: the tests: `transferlab models` answers in a fraction of a second instead of importing PyTorch and
#: timm and building every backbone (9.4 s and 861 MB measured)
TABLE = "recipes.json"


def table_rows() -> list[dict]:
    """The recipe listing as shipped with the package (see :data:`TABLE`)."""
    # (the file is read from the package folder: importing transferlab.models would load PyTorch)
    return json.loads(resources.files("transferlab").joinpath("models", TABLE).read_text())


def live_rows() -> list[dict]:
    """The recipe listing computed from the registry (imports PyTorch; builds each backbone on the
    meta device for its parameter count)."""
    from ..models import list_recipes  # (torch: see run())

    rows = []
    for r in list_recipes():
        rows.append({
            "name": r.name, "kind": r.kind, "timm_name": r.timm_name, "pretrained": r.pretrained,
            "source": r.source, "input_size": r.input_size, "mean": list(r.mean), "std": list(r.std),
            "crop_pct": r.crop_pct, "interpolation": r.interpolation, "params": _params(r.name),
            "defaults": dict(r.defaults), "head": list(r.head), "description": r.description,
        })
    return rows


def _console():
    return Console(width=None if sys.stdout.isatty() else 150)


def _fmt_params(n: int | None) -> str:
    if n is None:
        return "?"
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}K" if n >= 1e3 else str(n)


class LayerRow(TypedDict):
    """One backbone layer of ``transferlab models --layers NAME`` (a row of its ``--json`` list)."""

    index: int
    name: str
    type: str
    params: int
    block: int | None


def _print_layers(name: str, as_json: bool) -> int:
    import torch

    from ..models import backbone_blocks, create_model  # (torch: see run())
    from ..models.freeze import layer_parameters

    with torch.device("meta"):
        model = create_model(name, 2, pretrained=False)
    layers = model.layers()
    groups = backbone_blocks(model.backbone)
    group_of = {}
    for gi, group in enumerate(groups):
        for p in group:
            group_of[id(p)] = gi
    rows: list[LayerRow] = []
    for i, (lname, m) in enumerate(layers):
        ps = layer_parameters(m)
        rows.append({"index": i, "name": lname, "type": type(m).__name__, "params": sum(p.numel() for p in ps),
                     "block": group_of.get(id(ps[0])) if ps else None})
    if as_json:
        print(json.dumps({"recipe": name, "layers": rows, "blocks": len(groups)}, indent=2))
        return 0
    table = Table(title=f"{name}: {len(rows)} backbone layers (--unfreeze-from N trains layers N..)")
    for col in ("#", "layer", "type", "params", "block"):
        table.add_column(col, justify="right" if col in ("#", "params", "block") else "left")
    for r in rows:
        table.add_row(str(r["index"]), r["name"], r["type"], _fmt_params(r["params"]) if r["params"] else "",
                      "" if r["block"] is None else str(r["block"]))
    _console().print(table)
    return 0


def run(args: argparse.Namespace) -> int:
    # the models package is imported in the functions, not at the top: it loads PyTorch and timm
    # (5 s), which building the CLI parser (`transferlab --help`) must not pay
    if args.layers:
        from ..models import get_recipe

        get_recipe(args.layers)  # ConfigError for unknown names
        return _print_layers(args.layers, args.json)
    rows = table_rows()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = Table(title="model recipes (any timm model too: timm:NAME)")
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("name", "left"), ("kind", "left"), ("weights", "left"), ("input", "right"), ("params", "right"),
        ("freeze", "left"), ("augment", "left"))
    for col, justify in columns:
        table.add_column(col, justify=justify, no_wrap=True)
    table.add_column("description", ratio=1)
    for r in rows:
        table.add_row(r["name"], r["kind"], r["source"], str(r["input_size"]), _fmt_params(r["params"]),
                      str(r["defaults"].get("freeze", "")), str(r["defaults"].get("augment", "")), r["description"])
    console = _console()
    console.print(table)
    console.print("input: the default size; train picks one for your images (from their median shorter side: "
                  "from-scratch nets near the images' own size, pretrained ones at 128 px or more) unless --input-size "
                  "is given, and says which. params: backbone only, at that default size (the head depends on the "
                  "classes; the CNN ladder's depth, and so its parameters, follow the input size). "
                  "Pretrained weights offline: --weights PATH or a TRANSFERLAB_WEIGHTS folder.", highlight=False)
    return 0
