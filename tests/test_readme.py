"""The README stays true: its configuration table lists exactly the ``ECOM_`` variables the
code reads, and its layout section names every package and module of the tree."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from ecom_pipeline.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
CODE_FOLDERS = ("ecom_pipeline", "flows", "tasks", "deployments")
_NAME = re.compile(r"ECOM_[A-Z0-9_]*[A-Z0-9]")
_TABLE_ROW = re.compile(r"^\| `(ECOM_[A-Z0-9_]+)` \|(.*)\|(.*)\|$")


def settings_variables() -> set[str]:
    """``ECOM_`` + each Settings field (pydantic-settings' env_prefix, no aliases)."""
    prefix = Settings.model_config.get("env_prefix", "")
    assert prefix == "ECOM_"
    for name, field in Settings.model_fields.items():
        assert field.alias is None and field.validation_alias is None, name
    return {prefix + name.upper() for name in Settings.model_fields}


def literal_variables() -> set[str]:
    """Names that string literals of the code start with (``"ECOM_FAILPOINT_KILL_AT"``,
    ``"ECOM_REDSHIFT_IAM_ROLE: …"``); the bare prefix ``"ECOM_"`` of an f-string is not one."""
    found = set()
    for folder in CODE_FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    match = _NAME.match(node.value)
                    if match:
                        found.add(match.group())
    return found


def readme_table() -> dict[str, tuple[str, str]]:
    """The rows of the table under "## Configuration": variable → (default, what it does)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        match = _TABLE_ROW.match(line)
        if match:
            name, default, meaning = match.groups()
            assert name not in rows, f"{name} is listed twice"
            rows[name] = (default.strip(), meaning.strip())
    return rows


def test_the_scan_finds_variables_read_outside_the_settings() -> None:
    found = literal_variables()
    assert {"ECOM_FAILPOINT_KILL_AT", "ECOM_PII_KEY_SECRET_ARN"} <= found
    assert "ECOM_" not in found


def test_the_readme_lists_every_ecom_variable_the_code_reads_and_no_other() -> None:
    read = settings_variables() | literal_variables()
    listed = readme_table()
    assert sorted(read - set(listed)) == [], "read by the code, missing from the README table"
    assert sorted(set(listed) - read) == [], "in the README table, never read by the code"
    for name, (default, meaning) in listed.items():
        assert default and meaning, f"{name}: give its default and what it does"


def readme_layout() -> dict[str, str]:
    """The layout block under "## Layout": each top-level entry → its text (continuations
    included); the package's layers appear as ``ecom_pipeline/<layer>/`` entries."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("\n## Layout\n", 1)[1].split("```", 2)[1]
    entries: dict[str, str] = {}
    parent, current = "", ""
    for line in block.splitlines():
        if not line.strip():
            continue
        name, _, rest = line.strip().partition(" ")
        if not line.startswith(" " * 20):  # a new entry, top level or indented under the package
            current = (parent + name) if line.startswith("  ") else name
            if not line.startswith("  "):
                parent = name
            entries[current] = ""
        entries[current] += " " + (rest if not line.startswith(" " * 20) else line.strip())
    return entries


def test_the_readme_layout_names_every_layer_and_module_of_the_package() -> None:
    entries = readme_layout()
    package = ROOT / "ecom_pipeline"
    layers = sorted(p.name for p in package.iterdir() if (p / "__init__.py").is_file())
    for layer in layers:
        described = entries.get(f"ecom_pipeline/{layer}/")
        assert described is not None, f"ecom_pipeline/{layer}/ is missing from the README layout"
        words = set(re.findall(r"[a-z_]+", described))
        modules = {p.stem for p in (package / layer).glob("*.py")} - {"__init__"}
        assert sorted(modules - words) == [], f"{layer}/: modules the README layout omits"
    top = {p.stem for p in package.glob("*.py")} - {"__init__"}
    assert sorted(f"ecom_pipeline/{m}" for m in top if f"ecom_pipeline/{m}" not in entries) == []
    for folder in ("flows", "tasks", "deployments", "devtools", "docker", "benchmarks", "tests"):
        assert f"{folder}/" in entries, f"{folder}/ is missing from the README layout"
