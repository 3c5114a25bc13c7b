"""The analog twin of a chip (``runtime/devices/chip.py``) as plain ONNX nodes: every crossbar layer split over its
tiles, each tile with its own DAC, analog product, read noise, ADC and drift compensation, the partial sums added
digitally.

For tile ``(i, j)`` of a layer (input channels ``rows[i]``, output columns ``cols[j]``; ``runtime/devices/tiles.py``)
with input range ``r`` (``ranges["<tile>:in"] = (-r, r)``) and column scales ``s`` (each column's max ``|w|`` of the
tile in the stored weights: the mapping of ``weight_scaling_columnwise``), in real units::

    x_i  = the layer input's channels rows[i]                         (Slice)
    xq   = round(clip(x_i, -r, r) / d_in) * d_in,  d_in = 2 r / inp_res                         (DAC)
    y    = layer(xq, W_ij)                                             (the analog product, no bias)
    y   -= c(a) * layer(xq, W_ij * f),  a = n / g_ratio * layer(|xq|, |W_ij|) / (r s),
           c(a) = a (a (0.05 a - 0.2) + 0.5),  f_k = 1 - (1 - k / n)^2 for the tile's row k of n     (IR drop)
    y   += w_noise * sqrt(s * layer(xq^2, |W_ij|)) * z1                (PCM-like weight read noise)
    y   += out_noise * r * s * z2                                      (output noise)
    yq   = clip(round(y / d_out) * d_out, -b, b),  b = out_bound * r * s,  d_out = 2 b / out_res    (ADC)
    yq  *= alpha                                                       (drift compensation, digital)
    out  = concat_j(sum_i yq_ij) + bias                                (digital)

This is aihwkit's forward (``rpucuda/rpu_forward_backward_pass.cpp``: ``applyIrDrop``, ``applyOutputWeightNoise``;
``simulator/tiles/analog_mvm.py``: ``_prepare_input``, ``_finalize_output``) written in the layer's own units: aihwkit
divides the input by ``r`` and the weights by ``s`` and multiplies the output back by ``r s``. The standard normals
``z1``, ``z2`` are fed (``noise="fed"``, the runtime: streams keyed (seed, sample, layer, tile) as the weight drift
is) or drawn by the graph (``noise="graph"``, an exported twin); ``alpha`` is an input ``COMP_PREFIX + tile`` (ones
by default; the runtime feeds each sample's factors).

A convolution is split along its input channels, in whole channels: a kernel window is never cut
(``chip.channel_split``). Grouped convolutions and transposed convolutions must fit one tile.
"""
from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from ftcompile.errors import ConfigError, UnsupportedModelError
from ftcompile.passes.converters import NOISE_PREFIX, _layer_nodes, _slices, layer_key, products_probe
from ftcompile.passes.onnx_graph import TILE_SLICE, _keep_header
from ftcompile.runtime.devices.chip import Chip, channel_split, split_sizes
from ftcompile.runtime.devices.tiles import COMP_PREFIX, LayerTiles

W_NOISE = "/w"                        # suffix of a tile's weight-read-noise stream (its output noise: the tile key)


def _layout(node: gs.Node) -> tuple[gs.Constant, int, int, int, int]:
    """(weight, out_axis, in_axis of the weight; feature axis of the input, output axis of the product)."""
    w = node.inputs[1]
    if node.op in ("Conv", "ConvTranspose"):
        return (w, 0, 1, 1, 1) if node.op == "Conv" else (w, 1, 0, 1, 1)
    if node.op == "Gemm":
        if node.attrs.get("transA", 0):
            raise UnsupportedModelError(f"Gemm {node.name!r} with transA=1 cannot be mapped to tiles; re-export it.")
        return (w, 0, 1, 1, 1) if node.attrs.get("transB", 0) else (w, 1, 0, 1, 1)
    if isinstance(node.inputs[1], gs.Constant):  # MatMul x @ W: W is in x out
        return node.inputs[1], 1, 0, -1, -1
    return node.inputs[0], 0, 1, -2, -2          # MatMul W @ x


def _plan(node: gs.Node, chip: Chip) -> LayerTiles:
    w, out_axis, in_axis, _, _ = _layout(node)
    shape = tuple(w.values.shape)
    kernel = int(np.prod(shape[2:])) if node.op in ("Conv", "ConvTranspose") else 1
    rows = channel_split(shape[in_axis], kernel, chip.max_input_size)
    cols = split_sizes(shape[out_axis], chip.max_output_size)
    whole = node.op == "ConvTranspose" or node.attrs.get("group", 1) != 1
    if whole and (len(rows) > 1 or len(cols) > 1):
        what = "a transposed convolution" if node.op == "ConvTranspose" else "a grouped convolution"
        raise UnsupportedModelError(f"{node.op} {node.name!r} is {what} of {shape[in_axis] * kernel} rows: it must fit "
                                    f"one tile of {chip.max_input_size} rows; give a larger tile (--chip ...,tile=N).")
    return LayerTiles(layer_key(node), w.name, node.op, shape, out_axis, in_axis, rows, cols, kernel)


def chip_layers(model: onnx.ModelProto, chip: Chip) -> list[LayerTiles]:
    """Every crossbar layer of ``model`` on ``chip``'s tiles, in graph order."""
    return [_plan(node, chip) for node in _layer_nodes(gs.import_onnx(model))]


def noise_streams(layers: list[LayerTiles], chip: Chip) -> dict[str, tuple[str, str, int, int]]:
    """The twin's fed noise inputs: input name -> (stream key, layer key, tile columns, layer columns); a tile reads
    ``cols_tile / cols_layer`` of its layer's outputs per example."""
    out = {}
    for layer in layers:
        total = layer.shape[layer.out_axis]
        for tile in layer.tiles:
            n = tile.cols.stop - tile.cols.start
            streams = ([tile.key] if chip.out_noise else []) + ([tile.key + W_NOISE] if _w_noise(chip) else [])
            out.update({NOISE_PREFIX + s: (s, layer.layer, n, total) for s in streams})
    return out


def _w_noise(chip: Chip) -> bool:
    return chip.w_noise > 0 and chip.w_noise_type == "pcm_read"


def column_scales(layer: LayerTiles, w: np.ndarray, tile) -> np.ndarray:
    """The tile's column scales ``s`` (each column's max ``|w|`` in the tile; 1 for an all-zero column)."""
    block = np.abs(layer.canonical(w)[tile.cols, tile.chans]).reshape(tile.cols.stop - tile.cols.start, -1)
    s = block.max(axis=1).astype(np.float64)
    return np.where(s > 0, s, 1.0)


def ir_drop_factors(layer: LayerTiles, tile) -> np.ndarray:
    """``f_k = 1 - (1 - k / n)^2`` for the tile's ``n`` rows in aihwkit's order (channel, then kernel position),
    shaped as the tile's weight block in canonical layout (``1 x channels x kernel...``)."""
    n = tile.rows
    k = np.arange(n, dtype=np.float64)
    f = 1 - (1 - k / n) ** 2
    return f.reshape((1, tile.chans.stop - tile.chans.start) + tuple(layer.shape[2:] if layer.kernel > 1 else ()))


def calibrate_chip(model: onnx.ModelProto, feeds_batches, chip: Chip, max_batches: int = 4,
                   rows: int = 128) -> dict[str, tuple[float, float]]:
    """Each tile's input range ``(-r, r)``, ``r = init_std_alpha * std`` of the tile's input over the calibration
    data (aihwkit's ``init_from_data`` rule, ``InputRangeForward``: a running mean of ``init_std_alpha * std`` of
    its first ``init_from_data`` training batches; here one std over the calibration examples, and over the feature
    map rather than aihwkit's unfolded patches, whose padding zeros lower it slightly); ``init_value`` when the input
    is constant."""
    import onnxruntime as ort

    layers = chip_layers(model, chip)
    graph = gs.import_onnx(model)
    axes = {layer_key(n): _layout(n)[3] for n in _layer_nodes(graph)}
    probe, names = products_probe(model)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    ranks = {i.name: len(i.type.tensor_type.shape.dim) for i in probe.graph.input}
    moments = {t.key: np.zeros(3) for layer in layers for t in layer.tiles}
    wanted = [names[f"{layer.layer}:in"] for layer in layers]
    for b, feeds in enumerate(feeds_batches):
        if b >= max_batches:
            break
        for part in _slices(feeds, ranks, rows):
            for layer, x in zip(layers, session.run(wanted, part)):
                x = np.moveaxis(np.asarray(x, np.float64), axes[layer.layer], 0)
                for tile in layer.tiles:
                    v = x[tile.chans]
                    moments[tile.key] += (v.size, v.sum(), np.square(v).sum())
    if not any(m[0] for m in moments.values()):
        raise ConfigError("calibration data is empty; give a few batches of inputs.")
    ranges = {}
    for key, (n, s1, s2) in moments.items():
        std = np.sqrt(max(s2 / n - (s1 / n) ** 2, 0.0)) if n else 0.0
        r = chip.init_std_alpha * std if std > 0 else chip.init_value
        ranges[f"{key}:in"] = (-float(r), float(r))
    return ranges


def insert_chip(model: onnx.ModelProto, ranges: dict, chip: Chip, *, expose_weights: bool = True,
                noise: str = "graph") -> onnx.ModelProto:
    """The analog twin of ``model`` on ``chip`` at the tiles' input ``ranges`` (see module doc). ``expose_weights``:
    the layer weights and the compensation factors are also graph inputs (overridable initializers); ``noise``:
    ``graph`` (``RandomNormalLike``) or ``fed`` (inputs ``NOISE_PREFIX + stream``, ``noise_streams``)."""
    graph = gs.import_onnx(model)
    exposed = []
    for k, node in enumerate(_layer_nodes(graph)):
        layer = _plan(node, chip)
        missing = [t.key for t in layer.tiles if f"{t.key}:in" not in ranges]
        if missing:
            raise ConfigError(f"the chip's input ranges have no entry for tile {missing[0]!r}; they were calibrated on "
                              "another model or chip. Calibrate on data for this one (--calibrate-on).")
        exposed += _tile_layer(graph, node, layer, ranges, chip, noise, k)
    graph.cleanup().toposort()
    out = gs.export_onnx(graph)
    _keep_header(model, out)
    if out.ir_version < 4:
        out.ir_version = 4
    inits = {i.name: i for i in out.graph.initializer}
    for name in exposed if expose_weights else ():
        if name in inits:
            out.graph.input.append(onnx.helper.make_tensor_value_info(name, inits[name].data_type,
                                                                      list(inits[name].dims)))
    onnx.checker.check_model(out)
    return out


class _Builder:
    """Nodes appended to ``graph`` under one prefix."""

    def __init__(self, graph: gs.Graph, prefix: str):
        self.graph, self.prefix, self.n = graph, prefix, 0

    def const(self, value, dtype=np.float32) -> gs.Constant:
        self.n += 1
        return gs.Constant(f"{self.prefix}_c{self.n}", np.asarray(value, dtype=dtype))

    def op(self, op: str, *inputs, attrs=None, dtype=np.float32) -> gs.Variable:
        self.n += 1
        out = gs.Variable(f"{self.prefix}_{op.lower()}{self.n}", dtype=dtype)
        self.graph.nodes.append(gs.Node(op, name=f"{self.prefix}_{op.lower()}{self.n}", inputs=list(inputs),
                                        outputs=[out], attrs=attrs or {}))
        return out


def _tile_layer(graph: gs.Graph, node: gs.Node, layer: LayerTiles, ranges: dict, chip: Chip, noise: str,
                k: int) -> list[str]:
    """Replace ``node`` by its tiles; returns the names to expose (its weight, its tiles' compensation inputs)."""
    weight, out_axis, in_axis, feature_axis, y_axis = _layout(node)
    w = weight.values
    rank = len(w.shape) if node.op in ("Conv", "ConvTranspose") else 2 if node.op == "Gemm" else None
    bias = node.inputs[2] if node.op in ("Conv", "ConvTranspose", "Gemm") and len(node.inputs) > 2 else None
    x = next(t for t in node.inputs[:2] if t is not weight)
    y = node.outputs[0]
    node.outputs.clear()
    node.inputs.clear()
    b = _Builder(graph, f"ftcompile_tile_{k}")

    def column(values) -> gs.Constant:  # a per-column vector shaped to broadcast over the product
        v = np.asarray(values, np.float32)
        if rank is not None:
            return b.const(v.reshape((1, -1) + (1,) * (rank - 2)))
        return b.const(v if y_axis == -1 else v.reshape(-1, 1))

    sums = {}
    single = len(layer.tiles) == 1
    for tile in layer.tiles:
        r = float(ranges[f"{tile.key}:in"][1])
        s = column_scales(layer, w, tile)
        xi = x if len(layer.rows) == 1 else b.op("Slice", x, b.const([tile.chans.start], np.int64),
                                                  b.const([tile.chans.stop], np.int64),
                                                  b.const([feature_axis], np.int64))
        xq = b.op("Clip", xi, b.const(-r), b.const(r))
        if chip.inp_res:
            step = 2 * r / chip.inp_res
            xq = b.op("Mul", b.op("Round", b.op("Div", xq, b.const(step))), b.const(step))
        if single:
            wt = weight
        else:
            starts = [tile.chans.start, tile.cols.start]
            ends = [tile.chans.stop, tile.cols.stop]
            wt = gs.Variable(f"ftcompile_tile_{k}_w{tile.i}_{tile.j}", dtype=w.dtype)
            graph.nodes.append(gs.Node("Slice", name=f"{TILE_SLICE}_{k}_{tile.i}_{tile.j}",
                                       inputs=[weight, b.const(starts, np.int64), b.const(ends, np.int64),
                                               b.const([in_axis, out_axis], np.int64)], outputs=[wt]))
        yt = _product(b, node, layer, xq, wt)
        if chip.ir_drop:
            f = layer.from_canonical(ir_drop_factors(layer, tile)).astype(np.float32)
            current = _product(b, node, layer, b.op("Abs", xq), b.op("Abs", wt))
            a = b.op("Mul", current, column(tile.rows / chip.ir_drop_g_ratio / (r * s)))
            c = b.op("Mul", a, b.op("Add", b.op("Mul", a, b.op("Sub", b.op("Mul", a, b.const(0.05)), b.const(0.2))),
                                    b.const(0.5)))
            drop = _product(b, node, layer, xq, b.op("Mul", wt, b.const(f)))
            yt = b.op("Sub", yt, b.op("Mul", c, drop))
        if _w_noise(chip):
            spread = b.op("Sqrt", b.op("Mul", _product(b, node, layer, b.op("Mul", xq, xq), b.op("Abs", wt)),
                                       column(s)))
            yt = b.op("Add", yt, b.op("Mul", _normals(b, graph, yt, tile.key + W_NOISE, noise), b.op(
                "Mul", spread, b.const(chip.w_noise))))
        if chip.out_noise:
            yt = b.op("Add", yt, b.op("Mul", _normals(b, graph, yt, tile.key, noise), column(chip.out_noise * r * s)))
        bound = chip.out_bound * r * s
        if chip.out_res:
            step = column(2 * bound / chip.out_res)
            yt = b.op("Mul", b.op("Round", b.op("Div", yt, step)), step)
        yt = b.op("Min", b.op("Max", yt, column(-bound)), column(bound))
        comp = gs.Constant(COMP_PREFIX + tile.key, np.ones(tile.cols.stop - tile.cols.start, np.float32))
        yt = b.op("Mul", yt, b.op("Reshape", comp, b.const(_column_shape(rank, y_axis), np.int64)))
        sums.setdefault(tile.j, []).append(yt)
    parts = [v[0] if len(v) == 1 else b.op("Sum", *v) for _, v in sorted(sums.items())]
    z = parts[0] if len(parts) == 1 else b.op("Concat", *parts, attrs={"axis": y_axis})
    if bias is not None:  # digital, after the tiles (a convolution's per-channel bias over its spatial dims)
        shaped = bias if rank in (None, 2) or not isinstance(bias, gs.Constant) else gs.Constant(
            f"{bias.name}_ftcompile_shaped_{k}", bias.values.reshape((1, -1) + (1,) * (rank - 2)))
        z = b.op("Add", z, shaped)
    graph.nodes.append(gs.Node("Identity", name=f"ftcompile_tile_{k}_out", inputs=[z], outputs=[y]))
    return [weight.name] + [COMP_PREFIX + t.key for t in layer.tiles]


def _weight_first(layer: LayerTiles) -> bool:
    return layer.op == "MatMul" and layer.out_axis == 0


def _product(b: _Builder, node: gs.Node, layer: LayerTiles, x, w) -> gs.Variable:
    """The layer's op on ``x`` and a weight block ``w``, without bias."""
    inputs = [w, x] if _weight_first(layer) else [x, w]
    return b.op(node.op, *inputs, attrs=dict(node.attrs))


def _column_shape(rank, y_axis) -> list[int]:
    if rank is not None:
        return [1, -1] + [1] * (rank - 2)
    return [-1] if y_axis == -1 else [-1, 1]


def _normals(b: _Builder, graph: gs.Graph, like: gs.Tensor, stream: str, noise: str) -> gs.Variable:
    """Standard normals shaped as ``like``: the first ``size(like)`` values of the fed input ``NOISE_PREFIX + stream``
    (row-major), or drawn by ``RandomNormalLike`` with a seed of the stream's own."""
    if noise == "graph":
        import zlib

        return b.op("RandomNormalLike", like, attrs={"mean": 0.0, "scale": 1.0, "dtype": onnx.TensorProto.FLOAT,
                                                     "seed": float(zlib.crc32(stream.encode()) % 65536 + 1)})
    fed = gs.Variable(NOISE_PREFIX + stream, dtype=np.float32, shape=[f"noise_{b.prefix}_{b.n}"])
    graph.inputs.append(fed)
    size = b.op("Reshape", b.op("Size", like, dtype=np.int64), b.const([1], np.int64), dtype=np.int64)
    part = b.op("Slice", fed, b.const([0], np.int64), size)
    return b.op("Reshape", part, b.op("Shape", like, dtype=np.int64))
