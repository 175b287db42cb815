"""Snakemake workflow catalog habits: ``.snakemake-workflow-catalog.yml`` and a
``config/README.md`` that describes every option of the configuration schema."""

from __future__ import annotations

from typing import Any

import yaml
from conftest import ROOT

SCHEMAS = [ROOT / "config" / "schema" / "config.schema.yaml", ROOT / "config" / "schema" / "download.schema.yaml"]


def schema_properties(schema: Any) -> set[str]:
    """Every property name at any depth of a JSON schema ($defs included). A ``properties``
    mapping holds names -> schemas (a property may itself be called ``properties``)."""
    out: set[str] = set()
    todo = [schema]
    while todo:
        node = todo.pop()
        if isinstance(node, list):
            todo.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        for key, value in node.items():
            if key in ("properties", "$defs", "definitions", "patternProperties") and isinstance(value, dict):
                if key == "properties":
                    out.update(value)
                todo.extend(value.values())
            elif isinstance(value, (dict, list)):
                todo.append(value)
    return out


def undocumented(schema: Any, readme: str) -> list[str]:
    return sorted(p for p in schema_properties(schema) if f"`{p}`" not in readme)


def test_config_readme_describes_every_schema_option() -> None:
    readme = (ROOT / "config" / "README.md").read_text()
    for path in SCHEMAS:
        schema = yaml.safe_load(path.read_text())
        props = schema_properties(schema)
        assert {"name", "dataset", "featurize"} <= props or {"http", "materials_project"} <= props
        missing = undocumented(schema, readme)
        assert not missing, f"config/README.md does not describe {missing} of {path.name}"


def test_undocumented_options_are_found() -> None:
    schema = {
        "properties": {
            "a": {"type": "object", "properties": {"deep_option": {}, "properties": {"type": "array", "items": {}}}}
        },
        "$defs": {"x": {"properties": {"in_defs": {}}}},
    }
    assert schema_properties(schema) == {"a", "deep_option", "properties", "in_defs"}
    assert undocumented(schema, "`a`, `properties` and `in_defs`") == ["deep_option"]


def test_workflow_catalog_file() -> None:
    cat = yaml.safe_load((ROOT / ".snakemake-workflow-catalog.yml").read_text())
    usage = cat["usage"]
    assert set(usage) <= {"mandatory-flags", "software-stack-deployment", "report"}
    assert usage["software-stack-deployment"]["conda"] is True  # tests/workflow/test_envs.py checks the envs
    assert isinstance(usage["report"], bool) and usage["report"]
    assert usage["mandatory-flags"]["desc"] and "flags" in usage["mandatory-flags"]
    # report: true needs report captions for the report() outputs
    rules = "\n".join(p.read_text() for p in (ROOT / "rules").glob("*.smk"))
    for caption in {line.split('"')[1] for line in rules.splitlines() if 'caption="' in line}:
        assert (ROOT / "rules" / caption).resolve().exists(), caption
