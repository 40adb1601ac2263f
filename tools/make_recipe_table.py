"""Write src/transferlab/models/recipes.json, the table `transferlab models` lists, from the registry.

    python tools/make_recipe_table.py

Run it after changing a recipe (tests/test_models.py fails until the table matches the registry).
"""
from __future__ import annotations

import json
from pathlib import Path

from transferlab.commands.models import TABLE, live_rows

OUT = Path(__file__).resolve().parents[1] / "src" / "transferlab" / "models" / TABLE

if __name__ == "__main__":
    OUT.write_text(json.dumps(live_rows(), indent=1) + "\n")
    print(f"wrote {OUT}")
