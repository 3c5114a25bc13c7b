"""The programming file: what a chip's programming flow needs to write a model onto its tiles (``export-program``).

A folder with ``manifest.json`` and one ``.npz`` per tile (numpy's documented format: a zip of ``.npy`` arrays,
readable without ftcompile, ``numpy.load``). Schema ``ftcompile.program/1``; docs/chip.md describes every field.

Per tile (``runtime/devices/tiles.py``: output columns ``cols`` x rows of whole input channels, each channel's kernel
window in row-major order) the arrays are::

    g_plus, g_minus   cols x rows, uS: the target conductance of each device of each differential pair,
                      g_plus = max(w, 0) / s * g_max, g_minus = max(-w, 0) / s * g_max
    column_scale      cols: s, the column's max |w| in the tile (a weight at s maps to g_max);
                      w = (g_plus - g_minus) * s / g_max
    dac_range         2: [-r, r], the tile's input range (input units), quantized to dac_steps steps
    adc_bound         cols: b = out_bound * r * s, the ADC's bound per column (output units), adc_steps steps
    compensation_reference  cols (or 1): the calibration read the targets give (uS), the mean |g_plus - g_minus|
                      over the tile's one-hot reads (global: one value; column: per column); the chip takes its
                      own right after programming, and at time t scales the tile's output by reference / read(t)
    input_channels, output_columns   2 each: [start, stop) in the layer

``read_weights`` rebuilds every layer's weights from the files (the round trip a test checks).
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from ftcompile.errors import ConfigError, OutputError

SCHEMA = "ftcompile.program/1"
PAIR = ("g_plus = max(w, 0) / column_scale * g_max; g_minus = max(-w, 0) / column_scale * g_max; "
        "w = (g_plus - g_minus) * column_scale / g_max")
ROWS = ("a tile's rows are its input channels [start, stop) in order, each channel's kernel window row-major "
        "(a convolution's kernel_shape); its columns are the layer's outputs [start, stop)")


def program_tiles(model: onnx.ModelProto, chip, ranges: dict) -> list[tuple[dict, list[tuple[dict, dict]]]]:
    """Per layer: its record, and per tile its record and arrays (``model``: the digital model, unshared)."""
    from ftcompile.passes.chip_twin import chip_layers, column_scales

    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    out = []
    for layer in chip_layers(model, chip):
        w = np.asarray(inits[layer.weight], np.float64)
        c = layer.canonical(w)
        tiles = []
        for tile in layer.tiles:
            s = column_scales(c[tile.cols, tile.chans])
            block = c[tile.cols, tile.chans].reshape(len(s), -1)
            shaped = s.reshape(-1, 1)
            g_plus = np.maximum(block, 0) / shaped * chip.g_max
            g_minus = np.maximum(-block, 0) / shaped * chip.g_max
            r = float(ranges[f"{tile.key}:in"][1])
            diff = np.abs(g_plus - g_minus)
            reference = diff.mean(axis=1) if chip.drift_compensation == "column" else np.array([diff.mean()])
            arrays = {"g_plus": g_plus.astype(np.float32), "g_minus": g_minus.astype(np.float32),
                      "column_scale": s.astype(np.float32), "dac_range": np.array([-r, r], np.float32),
                      "adc_bound": (chip.out_bound * r * s).astype(np.float32),
                      "compensation_reference": reference.astype(np.float32),
                      "input_channels": np.array([tile.chans.start, tile.chans.stop], np.int64),
                      "output_columns": np.array([tile.cols.start, tile.cols.stop], np.int64)}
            record = {"key": tile.key, "row_tile": tile.i, "column_tile": tile.j, "rows": int(block.shape[1]),
                      "columns": int(block.shape[0]), "input_channels": [tile.chans.start, tile.chans.stop],
                      "output_columns": [tile.cols.start, tile.cols.stop]}
            tiles.append((record, arrays))
        out.append(({"layer": layer.layer, "weight": layer.weight, "op": layer.op, "shape": list(layer.shape),
                     "out_axis": layer.out_axis, "in_axis": layer.in_axis,
                     "kernel": list(layer.shape[2:]) if layer.kernel > 1 else [], "bias": "digital"}, tiles))
    return out


def write_program(model_path, out_dir, chip, calibration, *, model_sha256: str) -> dict:
    """Write the programming file of the model at ``model_path`` for ``chip`` (its tiles' input ranges from
    ``calibration``) into ``out_dir``; returns the manifest. Refuses a folder that already holds a manifest of
    another model, and never writes over the model."""
    from ftcompile.fileio import sha256_file, write_bytes_atomic, write_text_atomic
    from ftcompile.passes.onnx_graph import constants_to_initializers, unshare_weights
    from ftcompile.runtime.model import load_onnx

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{out_dir}: is a file; give a folder for the programming file (-o DIR).")
    old = out_dir / "manifest.json"
    if old.exists():
        try:
            previous = json.loads(old.read_text()).get("model_sha256")
        except ValueError:
            previous = None
        if previous != model_sha256:
            raise OutputError(f"{out_dir}: holds the programming file of another model; choose an empty folder.")
    out_dir.mkdir(parents=True, exist_ok=True)
    digital = unshare_weights(constants_to_initializers(load_onnx(model_path)))
    layers = []
    for n, (record, tiles) in enumerate(program_tiles(digital, chip, calibration.ranges)):
        for record_t, arrays in tiles:
            name = f"tile_{n:03d}_{record_t['row_tile']}_{record_t['column_tile']}.npz"
            path = out_dir / name
            buffer = io.BytesIO()
            np.savez(buffer, **arrays)
            write_bytes_atomic(path, buffer.getvalue())
            record_t.update(file=name, sha256=sha256_file(path))
        layers.append({**record, "tiles": [r for r, _ in tiles]})
    manifest = {"schema": SCHEMA, "model": str(model_path), "model_sha256": model_sha256, "chip": chip.spec(),
                "g_max_uS": chip.g_max, "pair": PAIR, "rows": ROWS,
                "dac": {"steps": chip.inp_res, "rule": "round(clip(x, -r, r) / (2 r / steps)) * (2 r / steps)"},
                "adc": {"steps": chip.out_res, "out_bound": chip.out_bound,
                        "rule": "clip(round(y / (2 b / steps)) * (2 b / steps), -b, b), b = adc_bound"},
                "compensation": {"type": chip.drift_compensation, "read": "onehot",
                                 "rule": "the tile's output times reference / read(t), after its ADC"},
                "input_ranges": calibration.describe(), "layers": layers}
    write_text_atomic(old, json.dumps(manifest, indent=2) + "\n")
    return manifest


def read_weights(out_dir) -> dict[str, np.ndarray]:
    """Every layer's weights (as the ONNX model stores them) rebuilt from a programming file's tiles:
    ``(g_plus - g_minus) * column_scale / g_max`` placed at each tile's channels and columns."""
    from ftcompile.runtime.devices.tiles import LayerTiles

    out_dir = Path(out_dir)
    try:
        manifest = json.loads((out_dir / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{out_dir}: no readable manifest.json ({exc}); give a folder written by "
                          "export-program.") from None
    if manifest.get("schema") != SCHEMA:
        raise ConfigError(f"{out_dir}: schema {manifest.get('schema')!r} is not {SCHEMA}.")
    g_max = float(manifest["g_max_uS"])
    weights = {}
    for layer in manifest["layers"]:
        plan = LayerTiles(layer["layer"], layer["weight"], layer["op"], tuple(layer["shape"]), layer["out_axis"],
                          layer["in_axis"], (), ())
        canonical_shape = [layer["shape"][layer["out_axis"]], layer["shape"][layer["in_axis"]], *layer["kernel"]]
        c = np.zeros(canonical_shape, np.float64)
        for tile in layer["tiles"]:
            with np.load(out_dir / tile["file"], allow_pickle=False) as f:
                w = (f["g_plus"].astype(np.float64) - f["g_minus"]) * f["column_scale"][:, None] / g_max
            (c0, c1), (o0, o1) = tile["input_channels"], tile["output_columns"]
            c[o0:o1, c0:c1] = w.reshape((o1 - o0, c1 - c0, *layer["kernel"]))
        weights[layer["weight"]] = np.ascontiguousarray(plan.from_canonical(c))
    return weights
