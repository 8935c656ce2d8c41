"""Each layer of the package imports only what its ``__init__`` says it may: the rule that
keeps the layers a newcomer can read one at a time (silver never reaches into gold, nothing but
``run`` and the CLI pulls the whole pipeline together)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ecom_pipeline"

#: Layer → the parts of ecom_pipeline it may import (a layer may always import itself).
MAY_IMPORT: dict[str, set[str]] = {
    "contracts": {"errors"},
    "lake": {"errors", "settings", "contracts.datasets"},
    "silver": {"errors", "contracts", "lake"},
    "gold": {"errors", "contracts", "lake", "silver"},
    "warehouse": {"errors", "settings", "gold.tables", "lake.layout", "lake.failpoints"},
}


def imported_parts(path: Path) -> set[str]:
    """The ``ecom_pipeline.*`` modules a file imports, without the package prefix."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found.update(
            n.removeprefix("ecom_pipeline.") for n in names if n.startswith("ecom_pipeline.")
        )
    return found


def allowed(part: str, layer: str) -> bool:
    rules = MAY_IMPORT[layer] | {layer}
    return any(part == rule or part.startswith(rule + ".") for rule in rules) or any(
        rule.startswith(part + ".")
        for rule in rules  # `from ecom_pipeline.lake import layout`
    )


@pytest.mark.parametrize("layer", sorted(MAY_IMPORT))
def test_a_layer_imports_only_what_it_may(layer: str) -> None:
    wrong = [
        f"{path.relative_to(PACKAGE.parent)} imports ecom_pipeline.{part}"
        for path in sorted((PACKAGE / layer).rglob("*.py"))
        for part in sorted(imported_parts(path))
        if not allowed(part, layer)
    ]
    assert not wrong, "\n".join(wrong)


def test_nothing_in_the_package_imports_run_but_the_cli() -> None:
    wrong = [
        str(path.relative_to(PACKAGE.parent))
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.parent.name != "run"
        and path.name != "cli.py"
        and any(part == "run" or part.startswith("run.") for part in imported_parts(path))
    ]
    assert not wrong
