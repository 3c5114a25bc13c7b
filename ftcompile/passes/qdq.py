"""``dequantize_weights``: a QDQ model's quantized weights as float initializers, for the drift runtime (numpy only).

A QDQ model stores a crossbar weight as integers read by a DequantizeLinear (or as floats behind a
QuantizeLinear -> DequantizeLinear pair). On the chip those integers are programmed and then drift, so the
tensor that drifts is the dequantized weight. This pass replaces each such initializer by its dequantized
values under the same name and lets the layer read it directly; the activations' quantizers stay. Drift
targets then are the layer weights (``find_drift_targets`` finds them as in a float model), under the names
the importer's ``ParamSource`` records, and the model computes what the QDQ model computes.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

_STANDARD = ("", "ai.onnx")


def _spread(value: np.ndarray, shape: tuple, axis: int, block: int) -> np.ndarray:
    if value.ndim == 0 or (value.size == 1 and not block):
        return value.reshape(())
    axis = axis % len(shape)
    if block:
        return np.repeat(value, block, axis=axis).take(np.arange(shape[axis]), axis=axis)
    return value.reshape([-1 if d == axis else 1 for d in range(len(shape))])


def _attr(node: onnx.NodeProto, name: str, default: int) -> int:
    return next((onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def _grid(node: onnx.NodeProto, inits: dict, shape: tuple) -> tuple[np.ndarray, np.ndarray, np.dtype]:
    """Scale and zero point of a Q/DQ node spread to ``shape`` (float32), and the type of its integers: the zero
    point's, else ``output_dtype``, else uint8 (the spec's default when the zero point is absent)."""
    axis, block = _attr(node, "axis", 1), _attr(node, "block_size", 0)
    scale = numpy_helper.to_array(inits[node.input[1]])
    if len(node.input) > 2 and node.input[2]:
        zero = numpy_helper.to_array(inits[node.input[2]])
        dtype = zero.dtype
    else:
        zero, to = np.zeros((), np.float32), _attr(node, "output_dtype", 0)
        dtype = onnx.helper.tensor_dtype_to_np_dtype(to) if to else np.dtype(np.uint8)
    return (_spread(scale, shape, axis, block).astype(np.float32),
            _spread(zero, shape, axis, block).astype(np.float32), dtype)


def dequantize_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    """A new model where every constant DequantizeLinear (of an integer initializer, or of a QuantizeLinear of a
    float one) is its float result, stored under the quantized initializer's name."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    inits = {i.name: i for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    rename: dict[str, str] = {}
    drop: set[int] = set()
    for node in graph.node:
        if node.op_type != "DequantizeLinear" or node.domain not in _STANDARD:
            continue
        if any(name and name not in inits for name in node.input[1:]):
            continue
        source, quantizer = node.input[0], None
        if source not in inits:
            quantizer = producer.get(source)
            if (quantizer is None or quantizer.op_type != "QuantizeLinear"
                    or any(name and name not in inits for name in quantizer.input)):
                continue
            source = quantizer.input[0]
        values = numpy_helper.to_array(inits[source])
        if quantizer is not None:  # the float weight on its grid, as the QuantizeLinear puts it
            qs, qz, dtype = _grid(quantizer, inits, values.shape)
            if not np.issubdtype(dtype, np.integer):  # a float8 grid: left to the graph
                continue
            values = np.clip(np.rint(values / qs) + qz, np.iinfo(dtype).min, np.iinfo(dtype).max)
        s, z, _ = _grid(node, inits, values.shape)
        out_type = onnx.helper.tensor_dtype_to_np_dtype(inits[node.input[1]].data_type)  # the scale's type
        dequantized = ((values.astype(np.float32) - z) * s).astype(out_type)
        inits[source].CopyFrom(numpy_helper.from_array(dequantized, source))
        rename[node.output[0]] = source
        drop.add(id(node))
    if not rename:
        return out
    keep = [n for n in graph.node if id(n) not in drop]
    for n in keep:
        for i, name in enumerate(n.input):
            if name in rename:
                n.input[i] = rename[name]
    for o in graph.output:
        if o.name in rename:
            raise ValueError(f"graph output {o.name!r} is a dequantized weight")
    del graph.node[:]
    graph.node.extend(keep)
    # QuantizeLinear nodes now read by nobody (they quantized a float weight) go too
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    live = [n for n in graph.node if not (n.op_type == "QuantizeLinear" and not any(o in used for o in n.output))]
    del graph.node[:]
    graph.node.extend(live)
    return out
