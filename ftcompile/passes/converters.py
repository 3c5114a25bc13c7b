"""The analog twin: DAC and ADC quantizers around every crossbar layer, as plain ONNX nodes.

A crossbar reads its inputs through digital-to-analog converters and its outputs through analog-to-digital
converters of limited precision. ``insert_converters`` rewrites each Conv/ConvTranspose/Gemm (and MatMul by
a weight) as

    x -> Clip(lo, hi) -> quantize to 2^B levels (DAC) -> layer without its bias -> [+ output noise] ->
    Clip(-b, b) -> quantize to 2^B levels (ADC) -> + bias (digital)

with the ranges calibrated on a few batches of data (``calibrate``): the DAC range is the observed [min, max] of the
layer's input, the ADC bound the largest observed |output| of the analog product. A chip is calibrated once, and so
is the twin: ``harden`` calibrates on the training data, trains through those ranges and stores them in the hardened
model (``stored_calibration``), and every later twin of that model (validate, sweep, export-twin) reuses them unless
told to calibrate on other data; ``Calibration.source`` says which, for the reports. Quantizing to ``2^B`` levels
over ``[lo, hi]`` is ``round((clip(x) - lo) / step) * step + lo`` with ``step = (hi - lo) / (2^B - 1)``. The
optional output noise (``adc_noise``) is the analog summation's read noise before the ADC: Gaussian with standard
deviation ``adc_noise * b`` per output and per read (aihwkit's ``out_noise``, there 0.06 of an ``out_bound`` of 12
in its normalized units, i.e. 0.005 of the bound). The runtime feeds it (``noise="fed"``: one graph input of
standard normals per layer, ``NOISE_PREFIX + key``), drawn from a stream keyed by (seed, sample, layer) like the
weight drift (``drift.KeyedNoise``), so a Monte-Carlo sample reads the same noise whatever the batch size, and the
torch objective reads the same numbers; an exported twin draws it itself (``noise="graph"``: ONNX
``RandomNormalLike`` with a fixed seed per layer, a stand-alone file). The result is a plain ONNX file anyone can
run with onnxruntime; the drifting weights stay initializers that are also listed as graph inputs, so a caller may
feed drifted copies (the runtime's own session does that for every sample).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from array_api_compat import array_namespace

from ftcompile.errors import ConfigError
from ftcompile.passes.onnx_graph import _keep_header

LAYERS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
NOISE_PREFIX = "ftcompile_adc_noise:"  # + layer key: the fed output noise of that layer (standard normals, 1-D)
TWIN_METADATA = "analog_twin"  # the metadata key a hardened model stores its converters and ranges under


@dataclass(frozen=True)
class Calibration:
    """The converter ranges of a twin (``"<layer>:in"`` -> (lo, hi), ``"<layer>:out"`` -> (-b, b)), what they were
    calibrated on (words a report can print), and whether they were read from the model (``stored``)."""

    ranges: dict
    source: str
    stored: bool = False

    def describe(self) -> str:
        return f"stored in the model, calibrated on {self.source}" if self.stored else f"calibrated on {self.source}"


def stored_calibration(model: onnx.ModelProto, chip=None) -> "Calibration | None":
    """The ranges a hardened model stores (``harden`` with converters), or None; with ``chip``, the tiles' input
    ranges a model hardened for a chip stores (``"<layer>#<i>.<j>:in"``), when they cover that chip's tiles."""
    from ftcompile.metadata import get_metadata

    twin = get_metadata(model).get(TWIN_METADATA)
    if not isinstance(twin, dict) or not twin.get("ranges") or ("chip" in twin) != (chip is not None):
        return None
    if chip is not None:
        from ftcompile.passes.chip_twin import chip_layers
        from ftcompile.passes.onnx_graph import constants_to_initializers, unshare_weights

        tiles = {f"{t.key}:in" for layer in chip_layers(unshare_weights(constants_to_initializers(model)), chip)
                 for t in layer.tiles}
        if not tiles <= set(twin["ranges"]):
            return None
    ranges = {k: (float(v[0]), float(v[1])) for k, v in twin["ranges"].items()}
    return Calibration(ranges, str(twin.get("calibrated_on", "data at hardening")), stored=True)


@dataclass(frozen=True)
class ConverterSpec:
    """Bits of the input (DAC) and output (ADC) converters; ``None`` leaves that side in full precision.
    ``adc_noise``: standard deviation of the additive output noise before the ADC, relative to its bound."""

    dac_bits: int | None = 8
    adc_bits: int | None = 8
    adc_noise: float = 0.0

    def __post_init__(self) -> None:
        for name, bits in (("--dac-bits", self.dac_bits), ("--adc-bits", self.adc_bits)):
            if bits is not None and not 1 <= bits <= 24:
                raise ConfigError(f"{name} {bits} must be between 1 and 24.")
        if not 0 <= self.adc_noise <= 1:
            raise ConfigError(f"--adc-noise {self.adc_noise} must be between 0 and 1 (a fraction of the ADC bound).")
        if self.adc_noise and self.adc_bits is None:
            raise ConfigError("--adc-noise is noise at the ADC; give --adc-bits too.")

    def describe(self) -> str:
        noise = f", output noise {self.adc_noise:g} of the bound" if self.adc_noise else ""
        return f"dac {self.dac_bits or 'float'} bits, adc {self.adc_bits or 'float'} bits{noise}"


def quantize(x, lo: float, hi: float, bits: int):
    """``x`` clipped to ``[lo, hi]`` and rounded to one of ``2^bits`` levels: ``round((x - lo) / step) * step + lo``,
    ``step = (hi - lo) / (2^bits - 1)``; any array namespace (the twin's nodes compute the same, tested)."""
    xp = array_namespace(x)
    step = (hi - lo) / (2 ** bits - 1)
    return xp.round((xp.clip(x, lo, hi) - lo) / step) * step + lo


def crossbar_layers(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """Layers whose weight is an initializer (MatMul only when one operand is)."""
    inits = {i.name for i in model.graph.initializer}
    out = []
    for node in model.graph.node:
        if node.op_type in ("Conv", "ConvTranspose", "Gemm") and len(node.input) > 1 and node.input[1] in inits:
            out.append(node)
        elif node.op_type == "MatMul" and (node.input[1] in inits or node.input[0] in inits):
            out.append(node)
    return out


def calibrate(model: onnx.ModelProto, feeds_batches, max_batches: int = 4,
              rows: int = 128) -> dict[str, tuple[float, float]]:
    """Observed ranges per layer: ``{"<node>:in": (min, max), "<node>:out": (-b, b)}`` of the analog product.

    ``feeds_batches`` yields onnxruntime feed dicts; the model runs with each layer's input and bias-free
    product exposed as outputs, ``rows`` examples of a batch at a time: every layer's activations of a slice
    are outputs at once (ResNet-20 validate with 8-bit converters peaked at 3,314 MB with whole 1,024-image
    batches, 850 MB with 128-row slices; 448 MB without converters). Ranges are minima and maxima, so the
    split changes nothing else.
    """
    lo: dict[str, float] = {}
    hi: dict[str, float] = {}
    for values in probe_runs(model, feeds_batches, max_batches=max_batches, rows=rows):
        for key, v in values.items():
            lo[key] = min(lo.get(key, np.inf), float(np.min(v)))
            hi[key] = max(hi.get(key, -np.inf), float(np.max(v)))
    if not lo:
        raise ConfigError("calibration data is empty; give a few batches of inputs.")
    ranges = {}
    for key in lo:
        if key.endswith(":out"):
            bound = max(abs(lo[key]), abs(hi[key]), 1e-12)
            ranges[key] = (-bound, bound)
        else:
            ranges[key] = (lo[key], hi[key] if hi[key] > lo[key] else lo[key] + 1e-12)
    return ranges


def probe_runs(model: onnx.ModelProto, feeds_batches, *, max_batches: int, rows: int, keys=None):
    """What calibration observes: for each run of at most ``rows`` examples of the first ``max_batches`` batches
    (``_slices``), ``{key: array}`` of the probe's outputs ``keys`` (``"<layer>:in"``, ``"<layer>:out"``,
    ``products_probe``; None: all of them)."""
    import onnxruntime as ort

    probe, names = products_probe(model)
    keys = list(names) if keys is None else list(keys)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    ranks = {i.name: len(i.type.tensor_type.shape.dim) for i in probe.graph.input}
    for i, feeds in enumerate(feeds_batches):
        if i >= max_batches:
            break
        for part in _slices(feeds, ranks, rows):
            yield dict(zip(keys, session.run([names[k] for k in keys], part)))


def _slices(feeds: dict, ranks: dict, rows: int):
    """``feeds`` in pieces of at most ``rows`` examples when every array is batched (its rank is the input's);
    a single unbatched example (one detector image) as it is."""
    batched = all(np.ndim(v) == ranks.get(k, -1) for k, v in feeds.items())
    n = len(next(iter(feeds.values()))) if batched and feeds else 0
    if not batched or n <= rows:
        yield feeds
        return
    for start in range(0, n, rows):
        yield {k: v[start:start + rows] for k, v in feeds.items()}


def insert_converters(model: onnx.ModelProto, ranges: dict, spec: ConverterSpec = ConverterSpec(), *,
                      expose_weights: bool = True, noise: str = "graph") -> onnx.ModelProto:
    """The analog twin of ``model`` with ``spec``'s converters at the calibrated ``ranges`` (see module doc).

    ``expose_weights``: also list the layer weights as graph inputs (overridable initializers). ``noise``: how the
    output noise (``spec.adc_noise``) is drawn: ``graph`` (``RandomNormalLike`` nodes) or ``fed`` (an input per
    layer, ``NOISE_PREFIX + key``, of exactly as many standard normals as the layer has outputs in a run).
    """
    graph = gs.import_onnx(model)
    weights = set()
    for k, node in enumerate(_layer_nodes(graph)):
        key = layer_key(node)
        if f"{key}:in" not in ranges:
            raise ConfigError(f"the converter ranges have no entry for layer {key!r}; they were calibrated on another "
                              "model. Calibrate on data for this one (--calibrate-on).")
        if spec.dac_bits is not None:
            x = node.inputs[0] if node.op != "MatMul" or not isinstance(node.inputs[0], gs.Constant) else node.inputs[1]
            q = _quantizer(graph, x, *ranges[f"{key}:in"], spec.dac_bits, f"ftcompile_dac_{k}")
            node.inputs[node.inputs.index(x)] = q
        if spec.adc_bits is not None:
            bias = None
            if node.op in ("Conv", "ConvTranspose", "Gemm") and len(node.inputs) > 2:
                bias = node.inputs.pop(2)
            y = node.outputs[0]
            product = gs.Variable(f"{y.name}_ftcompile_analog", dtype=y.dtype)
            node.outputs[0] = product
            std = spec.adc_noise * ranges[f"{key}:out"][1]
            read = (product if not spec.adc_noise else _fed_noise(graph, product, std, key, k) if noise == "fed"
                    else _output_noise(graph, product, std, k))
            q = _quantizer(graph, read, *ranges[f"{key}:out"], spec.adc_bits, f"ftcompile_adc_{k}")
            if bias is not None:
                shaped = _bias_for(graph, node, bias, k)
                graph.nodes.append(gs.Node("Add", name=f"ftcompile_bias_{k}", inputs=[q, shaped], outputs=[y]))
            else:
                graph.nodes.append(gs.Node("Identity", name=f"ftcompile_adc_out_{k}", inputs=[q], outputs=[y]))
        weights.update(t.name for t in node.inputs if isinstance(t, gs.Constant) and t.values.dtype.kind == "f")
    return finish_twin(graph, model, sorted(weights) if expose_weights else ())


def finish_twin(graph: gs.Graph, model: onnx.ModelProto, exposed) -> onnx.ModelProto:
    """The twin's graph exported under ``model``'s header, checked; the initializers named in ``exposed`` stay
    initializers and are also graph inputs, so the twin runs as it is or on fed drifted weights."""
    graph.cleanup().toposort()
    out = gs.export_onnx(graph)
    _keep_header(model, out)
    if out.ir_version < 4:
        out.ir_version = 4
    inits = {i.name: i for i in out.graph.initializer}
    for name in exposed:
        if name in inits:
            out.graph.input.append(onnx.helper.make_tensor_value_info(name, inits[name].data_type,
                                                                      list(inits[name].dims)))
    onnx.checker.check_model(out)
    return out


def layer_key(node) -> str:
    """The name ranges and noise streams use for a crossbar layer: its node name, or its output's."""
    name = node.name
    if name:
        return name
    out = node.outputs[0] if hasattr(node, "outputs") else node.output[0]
    return getattr(out, "name", out)


def _layer_nodes(graph: gs.Graph) -> list[gs.Node]:
    nodes = []
    for node in graph.nodes:
        if (node.op in ("Conv", "ConvTranspose", "Gemm") and len(node.inputs) > 1
                and isinstance(node.inputs[1], gs.Constant)):
            nodes.append(node)
        elif node.op == "MatMul" and any(isinstance(t, gs.Constant) for t in node.inputs[:2]):
            nodes.append(node)
    return nodes


def _quantizer(graph: gs.Graph, x: gs.Tensor, lo: float, hi: float, bits: int, name: str) -> gs.Variable:
    """Clip to [lo, hi], then round to one of 2^bits levels: (round((x - lo) / step)) * step + lo."""
    step = (hi - lo) / (2 ** bits - 1)
    c = lambda suffix, v: gs.Constant(f"{name}_{suffix}", np.array(v, dtype=np.float32))  # noqa: E731
    clipped = gs.Variable(f"{name}_clipped", dtype=np.float32)
    shifted = gs.Variable(f"{name}_shifted", dtype=np.float32)
    levels = gs.Variable(f"{name}_levels", dtype=np.float32)
    rounded = gs.Variable(f"{name}_rounded", dtype=np.float32)
    scaled = gs.Variable(f"{name}_scaled", dtype=np.float32)
    out = gs.Variable(f"{name}_out", dtype=np.float32)
    graph.nodes += [
        gs.Node("Clip", name=f"{name}_clip", inputs=[x, c("lo", lo), c("hi", hi)], outputs=[clipped]),
        gs.Node("Sub", name=f"{name}_sub", inputs=[clipped, c("lo2", lo)], outputs=[shifted]),
        gs.Node("Div", name=f"{name}_div", inputs=[shifted, c("step", step)], outputs=[levels]),
        gs.Node("Round", name=f"{name}_round", inputs=[levels], outputs=[rounded]),
        gs.Node("Mul", name=f"{name}_mul", inputs=[rounded, c("step2", step)], outputs=[scaled]),
        gs.Node("Add", name=f"{name}_add", inputs=[scaled, c("lo3", lo)], outputs=[out]),
    ]
    return out


def _output_noise(graph: gs.Graph, y: gs.Tensor, std: float, k: int) -> gs.Variable:
    """``y + N(0, std^2)`` per element and per run (``RandomNormalLike``, seed ``k + 1``: layers draw apart)."""
    noise = gs.Variable(f"ftcompile_adc_noise_{k}", dtype=np.float32)
    out = gs.Variable(f"ftcompile_adc_noisy_{k}", dtype=np.float32)
    graph.nodes += [
        gs.Node("RandomNormalLike", name=f"ftcompile_adc_noise_{k}", inputs=[y], outputs=[noise],
                attrs={"mean": 0.0, "scale": float(std), "seed": float(k + 1), "dtype": onnx.TensorProto.FLOAT}),
        gs.Node("Add", name=f"ftcompile_adc_noisy_{k}", inputs=[y, noise], outputs=[out]),
    ]
    return out


def _fed_noise(graph: gs.Graph, y: gs.Tensor, std: float, key: str, k: int) -> gs.Variable:
    """``y + std * z``, ``z`` the fed normals of ``key`` (``fed_normals``)."""
    scaled = gs.Variable(f"ftcompile_adc_fed_{k}_scaled", dtype=np.float32)
    out = gs.Variable(f"ftcompile_adc_fed_{k}_out", dtype=np.float32)
    graph.nodes += [
        gs.Node("Mul", name=f"ftcompile_adc_fed_{k}_mul", inputs=[fed_normals(graph, y, key), gs.Constant(
                f"ftcompile_adc_fed_{k}_std", np.array(std, np.float32))], outputs=[scaled]),
        gs.Node("Add", name=f"ftcompile_adc_fed_{k}_add", inputs=[y, scaled], outputs=[out]),
    ]
    return out


def fed_normals(graph: gs.Graph, like: gs.Tensor, stream: str) -> gs.Variable:
    """Standard normals shaped as ``like``: the graph input ``NOISE_PREFIX + stream`` of exactly ``size(like)``
    values in ``like``'s layout (row-major), so the feeder (``DriftSession.draw_noise``) decides every value and the
    graph only reshapes them. The converter twin reads one stream per layer, the chip twin one per tile."""
    name = f"ftcompile_fed_{stream}"
    fed = gs.Variable(NOISE_PREFIX + stream, dtype=np.float32, shape=[f"noise_{stream}"])
    graph.inputs.append(fed)
    shape = gs.Variable(f"{name}_shape", dtype=np.int64)
    out = gs.Variable(f"{name}_normals", dtype=np.float32)
    graph.nodes += [gs.Node("Shape", name=f"{name}_shape", inputs=[like], outputs=[shape]),
                    gs.Node("Reshape", name=f"{name}_reshape", inputs=[fed, shape], outputs=[out])]
    return out


def _bias_for(graph: gs.Graph, node: gs.Node, bias: gs.Tensor, k: int) -> gs.Tensor:
    """A convolution's per-channel bias broadcast over the spatial dims (C -> 1 x C x 1 ...)."""
    if node.op == "Gemm" or not isinstance(bias, gs.Constant):
        return bias
    rank = len(node.inputs[1].values.shape)
    return gs.Constant(f"{bias.name}_ftcompile_shaped_{k}", bias.values.reshape((1, -1) + (1,) * (rank - 2)))


def products_probe(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, str]]:
    """A copy that also outputs each layer's input and its bias-free product (the analog read-out)."""
    graph = gs.import_onnx(model)
    names = {}
    for k, node in enumerate(_layer_nodes(graph)):
        key = layer_key(node)
        x = node.inputs[0] if node.op != "MatMul" or not isinstance(node.inputs[0], gs.Constant) else node.inputs[1]
        seen = gs.Variable(f"ftcompile_probe_in_{k}", dtype=np.float32)  # an Identity: x may be a graph input
        graph.nodes.append(gs.Node("Identity", name=f"ftcompile_probe_in_node_{k}", inputs=[x], outputs=[seen]))
        graph.outputs.append(seen)
        names[f"{key}:in"] = seen.name
        product = gs.Variable(f"ftcompile_probe_{k}", dtype=np.float32)
        inputs = list(node.inputs[:2]) if node.op != "MatMul" else list(node.inputs)
        graph.nodes.append(gs.Node(node.op, name=f"ftcompile_probe_node_{k}", attrs=dict(node.attrs),
                                   inputs=inputs, outputs=[product]))
        names[f"{key}:out"] = product.name
        graph.outputs.append(product)
    graph.cleanup().toposort()
    probe = gs.export_onnx(graph)
    _keep_header(model, probe)
    return probe, names
