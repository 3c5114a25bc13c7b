"""The analog twin's converters inside torch training: DAC and ADC quantizers as forward hooks on the crossbar
layers of an imported module, at ranges calibrated by the runtime's own ``calibrate`` on the ONNX model.

The twin (``converters.py``) computes ``x -> quantize_dac(x) -> layer without bias -> quantize_adc -> + bias``
with ONNX nodes; here a pre-hook quantizes the layer's input and a hook quantizes its bias-free output and
adds the bias back. Both sides compute ``converters.quantize`` (a test runs the twin and this against each
other). Rounding has no gradient, so the hooks pass gradients straight through (``x + (q(x) - x).detach()``,
Bengio et al. 2013), and the clip does pass zero gradient outside the range, as a real converter saturates.
The ADC's output noise (``ConverterSpec.adc_noise``) is drawn fresh in every forward, as the twin draws it per read.
"""
from __future__ import annotations

import onnx
import torch
import torch.fx as fx

from ftcompile.passes.converters import ConverterSpec, crossbar_layers, quantize
from ftcompile.passes.layers import find_layers


def _straight_through(x: torch.Tensor, lo: float, hi: float, bits: int) -> torch.Tensor:
    clipped = torch.clamp(x, lo, hi)
    return clipped + (quantize(x, lo, hi, bits) - clipped).detach()


def _adc_straight_through(y: torch.Tensor, bound: float, bits: int, noise: float) -> torch.Tensor:
    """The ADC's reading of ``y`` plus fresh read noise of std ``noise * bound`` (the twin's ``_output_noise``)."""
    noisy = y + (noise * bound) * torch.randn_like(y) if noise else y
    return _straight_through(noisy, -bound, bound, bits)


class _DAC:
    def __init__(self, lo: float, hi: float, bits: int):
        self.lo, self.hi, self.bits = lo, hi, bits

    def __call__(self, module, inputs):
        return (_straight_through(inputs[0], self.lo, self.hi, self.bits),) + tuple(inputs[1:])


class _ADC:
    def __init__(self, bound: float, bits: int, noise: float = 0.0):
        self.bound, self.bits, self.noise = bound, bits, noise

    def __call__(self, module, inputs, output):
        bias = getattr(module, "bias", None)
        if bias is None:
            return _adc_straight_through(output, self.bound, self.bits, self.noise)
        shaped = bias.view((1, -1) + (1,) * (output.dim() - 2)) if output.dim() > 2 else bias
        return _adc_straight_through(output - shaped, self.bound, self.bits, self.noise) + shaped


def layer_keys(model: onnx.ModelProto) -> dict[str, str]:
    """Weight initializer name -> the calibration key (``node.name or output``) of its crossbar layer."""
    inits = {i.name for i in model.graph.initializer}
    keys = {}
    for node in crossbar_layers(model):
        weight = next(t for t in (node.input[1], node.input[0]) if t in inits)
        keys[weight] = node.name or node.output[0]
    return keys


def attach_converters(gm: fx.GraphModule, sources: dict, model: onnx.ModelProto, ranges: dict,
                      spec: ConverterSpec) -> list:
    """Hooks on every crossbar layer of ``gm`` whose ONNX node ``ranges`` calibrated; returns the hook handles
    (``handle.remove()`` before export: the exported ONNX is the digital model, the twin is built at sign-off).
    ``sources``: the importer's state-dict key -> initializer map."""
    keys = layer_keys(model)
    handles = []
    for layer in find_layers(gm, sources):
        key = keys.get(layer.onnx_weight)
        if key is None or f"{key}:in" not in ranges:
            continue
        mod = gm.get_submodule(layer.target)
        if spec.dac_bits is not None:
            handles.append(mod.register_forward_pre_hook(_DAC(*ranges[f"{key}:in"], spec.dac_bits)))
        if spec.adc_bits is not None:
            handles.append(mod.register_forward_hook(_ADC(ranges[f"{key}:out"][1], spec.adc_bits, spec.adc_noise)))
    return handles
