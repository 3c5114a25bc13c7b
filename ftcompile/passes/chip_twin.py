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
           c(a) = a (a (0.05 a - 0.2) + 0.5),  f_k = ir_drop (1 - (1 - k / n)^2) for row k of n     (IR drop)
    y   += sqrt(w_noise^2 s layer(xq^2, |W_ij|) + (out_noise r s)^2) z  (PCM-like weight read noise and
                                                                        output noise: one draw of their sum)
    yq   = clip(round(y / d_out) * d_out, -b, b),  b = out_bound * r * s,  d_out = 2 b / out_res    (ADC)
    yq  *= alpha                                                       (drift compensation, digital)
    out  = concat_j(sum_i yq_ij) + bias                                (digital)

This is aihwkit's forward (``rpucuda/rpu_forward_backward_pass.cpp``: ``applyIrDrop``, ``applyOutputWeightNoise``;
``simulator/tiles/analog_mvm.py``: ``_prepare_input``, ``_finalize_output``) written in the layer's own units: aihwkit
divides the input by ``r`` and the weights by ``s`` and multiplies the output back by ``r s``. aihwkit draws the read
noise and the output noise apart; their sum is one Gaussian of the summed variance, drawn once here (half the normals:
drawing them is most of what the noise costs). The standard normals ``z`` are fed (``noise="fed"``, the runtime: a
stream keyed (seed, sample, layer, tile) as the weight drift is) or drawn by the graph (``noise="graph"``, an exported
twin); ``alpha`` is an input ``COMP_PREFIX + tile`` (ones by default; the runtime feeds each sample's factors).
Products that share an input run as one op over stacked weights (the read, the IR-drop term and, after a Relu, the
current), which reads the input once.

A convolution is split along its input channels, in whole channels: a kernel window is never cut
(``chip.channel_split``). Grouped convolutions and transposed convolutions must fit one tile.
"""
from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from array_api_compat import array_namespace

from ftcompile.errors import ConfigError, UnsupportedModelError
from ftcompile.passes.converters import (NOISE_PREFIX, _bias_for, _layer_nodes, fed_normals, finish_twin, layer_key,
                                         probe_runs)
from ftcompile.passes.onnx_graph import TILE_SLICE
from ftcompile.runtime.devices.chip import Chip, channel_split, split_sizes
from ftcompile.runtime.devices.tiles import COMP_PREFIX, LayerTiles



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
            if chip.out_noise or _w_noise(chip):
                out[NOISE_PREFIX + tile.key] = (tile.key, layer.layer, n, total)
    return out


def _w_noise(chip: Chip) -> bool:
    return chip.w_noise > 0 and chip.w_noise_type == "pcm_read"


def column_scales(block):
    """A tile's column scales ``s``: each column's max ``|w|`` of ``block``, the tile's weights in canonical layout
    (``columns x channels x kernel...``); 1 for an all-zero column. Any array namespace: the torch twin
    (``chip_hooks``) and the programming file compute the same."""
    xp = array_namespace(block)
    s = xp.max(xp.reshape(xp.abs(block), (block.shape[0], -1)), axis=1)
    return xp.where(s > 0, s, xp.ones_like(s))


def ir_drop_factors(layer: LayerTiles, tile, scale: float) -> np.ndarray:
    """``scale f_k``, ``f_k = 1 - (1 - k / n)^2`` for the tile's ``n`` rows in aihwkit's order (channel, then kernel
    position), shaped as the tile's weight block in canonical layout (``1 x channels x kernel...``); ``scale``: the
    chip's ``ir_drop`` (aihwkit's ``applyIrDrop`` multiplies the drop by it)."""
    n = tile.rows
    k = np.arange(n, dtype=np.float64)
    f = scale * (1 - (1 - k / n) ** 2)
    return f.reshape((1, tile.chans.stop - tile.chans.start) + tuple(layer.shape[2:]))  # a 1x1 kernel too


def calibrate_chip(model: onnx.ModelProto, feeds_batches, chip: Chip, max_batches: int = 4,
                   rows: int = 128) -> dict[str, tuple[float, float]]:
    """Each tile's input range ``(-r, r)``, ``r = init_std_alpha * std`` of the tile's input over the calibration
    data (aihwkit's ``init_from_data`` rule, ``InputRangeForward``: a running mean of ``init_std_alpha * std`` of
    its first ``init_from_data`` training batches; here one std over the calibration examples, and over the feature
    map rather than aihwkit's unfolded patches, whose padding zeros lower it slightly); ``init_value`` when the input
    is constant."""
    nodes = _layer_nodes(gs.import_onnx(model))
    layers = [(_plan(node, chip), _layout(node)[3]) for node in nodes]  # with the feature axis of each input
    moments = {t.key: np.zeros(3) for layer, _ in layers for t in layer.tiles}
    keys = [f"{layer.layer}:in" for layer, _ in layers]
    for values in probe_runs(model, feeds_batches, max_batches=max_batches, rows=rows, keys=keys):
        for layer, axis in layers:
            x = np.moveaxis(np.asarray(values[f"{layer.layer}:in"], np.float64), axis, 0)
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
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    exposed = []
    for k, node in enumerate(_layer_nodes(graph)):
        layer = _plan(node, chip)
        missing = [t.key for t in layer.tiles if f"{t.key}:in" not in ranges]
        if missing:
            raise ConfigError(f"the chip's input ranges have no entry for tile {missing[0]!r}; they were calibrated on "
                              "another model or chip. Calibrate on data for this one (--calibrate-on).")
        exposed += _tile_layer(graph, node, layer, ranges, chip, noise, k, opset)
    return finish_twin(graph, model, exposed if expose_weights else ())


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
                k: int, opset: int) -> list[str]:
    """Replace ``node`` by its tiles; returns the names to expose (its weight, its tiles' compensation inputs)."""
    weight, out_axis, in_axis, feature_axis, y_axis = _layout(node)
    w = weight.values
    rank = len(w.shape) if node.op in ("Conv", "ConvTranspose") else 2 if node.op == "Gemm" else None
    bias = node.inputs[2] if node.op in ("Conv", "ConvTranspose", "Gemm") and len(node.inputs) > 2 else None
    bias = _bias_for(graph, node, bias, k) if bias is not None else None  # digital, after the tiles
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
    for tile in layer.tiles:
        r = float(ranges[f"{tile.key}:in"][1])
        s = column_scales(layer.canonical(w)[tile.cols, tile.chans]).astype(np.float64)
        xi = x if len(layer.rows) == 1 else b.op("Slice", x, b.const([tile.chans.start], np.int64),
                                                  b.const([tile.chans.stop], np.int64),
                                                  b.const([feature_axis], np.int64))
        xq = _dac(b, xi, r, chip.inp_res, opset)
        # the tile's weight block: a Slice of the layer's weight (all of it when the layer is one tile), named so
        # that the drift finds the weight behind it (onnx_graph.TILE_SLICE; a Slice, which unshare_weights leaves)
        wt = gs.Variable(f"ftcompile_tile_{k}_w{tile.i}_{tile.j}", dtype=w.dtype)
        graph.nodes.append(gs.Node("Slice", name=f"{TILE_SLICE}_{k}_{tile.i}_{tile.j}", outputs=[wt], inputs=[
            weight, b.const([tile.chans.start, tile.cols.start], np.int64),
            b.const([tile.chans.stop, tile.cols.stop], np.int64), b.const([in_axis, out_axis], np.int64)]))
        # the products of xq in one op over the weights stacked along the outputs: the read (W), the IR-drop term
        # (W f) and, when the input cannot be negative (a Relu's output: |xq| = xq), the current (|W|)
        n = tile.cols.stop - tile.cols.start
        abs_w = b.op("Abs", wt) if chip.ir_drop or _w_noise(chip) else None
        nonneg = _nonnegative(x)
        stacked = [wt]
        if chip.ir_drop:  # a = n / g_ratio * layer(|xq|, |W|) / (r s): the per-column factor folded into |W|
            f = layer.from_canonical(ir_drop_factors(layer, tile, chip.ir_drop)).astype(np.float32)
            k_col = layer.from_canonical((tile.rows / chip.ir_drop_g_ratio / (r * s)).reshape(
                (-1,) + (1,) * (len(w.shape) - 1))).astype(np.float32)
            abs_wk = b.op("Mul", abs_w, b.const(k_col))
            stacked += [b.op("Mul", wt, b.const(f))] + ([abs_wk] if nonneg else [])
        products = _split(b, _product(b, node, layer, xq, _concat(b, stacked, out_axis)), len(stacked), n, y_axis)
        yt = products[0]
        if chip.ir_drop:
            a = products[2] if nonneg else _product(b, node, layer, b.op("Abs", xq), abs_wk)
            c = b.op("Mul", a, b.op("Add", b.op("Mul", a, b.op("Sub", b.op("Mul", a, b.const(0.05)), b.const(0.2))),
                                    b.const(0.5)))
            yt = b.op("Sub", yt, b.op("Mul", c, products[1]))
        # output noise and the PCM-like read noise, independent Gaussians: one draw of their joint spread
        if _w_noise(chip):
            var = b.op("Mul", _product(b, node, layer, b.op("Mul", xq, xq), abs_w), column(chip.w_noise ** 2 * s))
            if chip.out_noise:
                var = b.op("Add", var, column((chip.out_noise * r * s) ** 2))
            yt = b.op("Add", yt, b.op("Mul", _normals(b, graph, yt, tile.key, noise), b.op("Sqrt", var)))
        elif chip.out_noise:
            yt = b.op("Add", yt, b.op("Mul", _normals(b, graph, yt, tile.key, noise), column(chip.out_noise * r * s)))
        # the ADC in steps of its column, clipped at +-out_res/2 steps (= +-out_bound r s), then the compensation
        # factor: round(y / d) clipped, times (d alpha), d = 2 b / out_res (one pass fewer than scaling back first)
        bound = chip.out_bound * r * s
        comp = gs.Constant(COMP_PREFIX + tile.key, np.ones(n, np.float32))
        alpha = b.op("Reshape", comp, b.const(_column_shape(rank, y_axis), np.int64))
        if chip.out_res:
            step = column(2 * bound / chip.out_res)
            levels = b.op("Clip", b.op("Round", b.op("Div", yt, step)), b.const(-chip.out_res / 2),
                          b.const(chip.out_res / 2))
            yt = b.op("Mul", levels, b.op("Mul", step, alpha))
        else:
            yt = b.op("Mul", b.op("Min", b.op("Max", yt, column(-bound)), column(bound)), alpha)
        sums.setdefault(tile.j, []).append(yt)
    parts = [v[0] if len(v) == 1 else b.op("Sum", *v) for _, v in sorted(sums.items())]
    z = parts[0] if len(parts) == 1 else b.op("Concat", *parts, attrs={"axis": y_axis})
    if bias is not None:
        z = b.op("Add", z, bias)
    graph.nodes.append(gs.Node("Identity", name=f"ftcompile_tile_{k}_out", inputs=[z], outputs=[y]))
    return [weight.name] + [COMP_PREFIX + t.key for t in layer.tiles]


def _dac(b: _Builder, x, r: float, steps: int, opset: int):
    """``round(clip(x, -r, r) / d) d``, ``d = 2 r / steps`` (aihwkit's DAC in the layer's units): as
    QuantizeLinear/DequantizeLinear to int8 when its levels fit (254 steps: -127..127), else Div/Round/Mul."""
    xc = b.op("Clip", x, b.const(-r), b.const(r))
    if not steps:
        return xc
    step = 2 * r / steps
    if steps % 2 == 0 and steps // 2 <= 127 and opset >= 10:
        scale, zero = b.const(step), b.const(0, np.int8)
        return b.op("DequantizeLinear", b.op("QuantizeLinear", xc, scale, zero, dtype=np.int8), scale, zero)
    return b.op("Mul", b.op("Round", b.op("Div", xc, b.const(step))), b.const(step))


def _nonnegative(x: gs.Tensor) -> bool:
    """Whether ``x`` is a Relu's output (then ``|x| = x``)."""
    return len(x.inputs) == 1 and x.inputs[0].op == "Relu"


def _concat(b: _Builder, weights: list, axis: int):
    return weights[0] if len(weights) == 1 else b.op("Concat", *weights, attrs={"axis": axis})


def _split(b: _Builder, y, parts: int, n: int, axis: int) -> list:
    """``y``'s ``parts`` consecutive blocks of ``n`` along ``axis`` (Slice: any opset from 10)."""
    if parts == 1:
        return [y]
    return [b.op("Slice", y, b.const([p * n], np.int64), b.const([(p + 1) * n], np.int64), b.const([axis], np.int64))
            for p in range(parts)]


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
    """Standard normals shaped as ``like``: the fed input ``NOISE_PREFIX + stream`` (``converters.fed_normals``: the
    runtime feeds each tile's count), or drawn by ``RandomNormalLike`` with a seed of the stream's own."""
    if noise == "graph":
        import zlib

        return b.op("RandomNormalLike", like, attrs={"mean": 0.0, "scale": 1.0, "dtype": onnx.TensorProto.FLOAT,
                                                     "seed": float(zlib.crc32(stream.encode()) % 65536 + 1)})
    return fed_normals(graph, like, stream)
