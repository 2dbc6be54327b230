"""docs/status-schema.json, and a check of `bingo-host status --json` output against it (a small
JSON Schema subset of our own, strict about undocumented keys; jsonschema too when installed)."""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((REPO / "docs" / "status-schema.json").read_text())

_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def validate(value, schema, path="$", root=SCHEMA, strict=True) -> list[str]:
    """A small JSON Schema subset (type, const, enum, required, properties, items, oneOf, $ref,
    minimum, maximum). strict: also reject keys the schema does not document (catches drift)."""
    if "$ref" in schema:
        target = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            target = target[part]
        return validate(value, target, path, root, strict)
    errors = []
    if "oneOf" in schema:
        matches = [s for s in schema["oneOf"] if not validate(value, s, path, root, strict)]
        if len(matches) != 1:
            errors.append(f"{path}: matches {len(matches)} of oneOf")
        return errors
    if "const" in schema and value != schema["const"]:
        errors.append(f"{path}: {value!r} != {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} not in {schema['enum']}")
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]

        def is_type(t):
            if t == "integer":
                return isinstance(value, int) and not isinstance(value, bool)
            if t == "number":
                return isinstance(value, (int, float)) and not isinstance(value, bool)
            return isinstance(value, _TYPES[t])
        if not any(is_type(t) for t in types):
            return errors + [f"{path}: {value!r} is not {types}"]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{path}: {value} < {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{path}: {value} > {schema['maximum']}")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        errors += [f"{path}: missing {k}" for k in schema.get("required", []) if k not in value]
        for key, item in value.items():
            if key in props:
                errors += validate(item, props[key], f"{path}.{key}", root, strict)
            elif strict and "properties" in schema:
                errors.append(f"{path}: undocumented key {key!r}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errors += validate(item, schema["items"], f"{path}[{i}]", root, strict)
    return errors


def assert_valid(report: dict) -> None:
    errors = validate(report, SCHEMA)
    assert not errors, "\n".join(errors)
    try:
        import jsonschema
    except ImportError:
        return
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    jsonschema.validate(report, SCHEMA)
