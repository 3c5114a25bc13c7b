"""``ftcompile.*`` metadata_props of ONNX models (torch-free: the runtime and export-twin write them too)."""
from __future__ import annotations

import json

import onnx

from ftcompile.runtime.stats import strict_json

META_PREFIX = "ftcompile."


def set_metadata(model: onnx.ModelProto, values: dict) -> None:
    """Set ``ftcompile.*`` metadata_props (JSON-encoded unless a string), replacing old values."""
    keep = [p for p in model.metadata_props
            if not (p.key.startswith(META_PREFIX) and p.key[len(META_PREFIX):] in values)]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for key, value in values.items():
        model.metadata_props.add(key=META_PREFIX + key, value=value if isinstance(value, str)
                                   else json.dumps(strict_json(value), allow_nan=False))


def get_metadata(model: onnx.ModelProto) -> dict:
    out = {}
    for p in model.metadata_props:
        if p.key.startswith(META_PREFIX):
            try:
                out[p.key[len(META_PREFIX):]] = json.loads(p.value)
            except ValueError:
                out[p.key[len(META_PREFIX):]] = p.value
    return out
