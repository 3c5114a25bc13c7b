"""The analog twin's converters inside torch training: DAC and ADC quantizers as forward hooks on the crossbar
layers of an imported module, at ranges calibrated by the runtime's own ``calibrate`` on the ONNX model.

The twin (``converters.py``) computes ``x -> quantize_dac(x) -> layer without bias -> quantize_adc -> + bias``
with ONNX nodes; here a pre-hook quantizes the layer's input and a hook quantizes its bias-free output and
adds the bias back. Both sides compute ``converters.quantize`` (a test runs the twin and this against each
other). Rounding has no gradient, so the hooks pass gradients straight through (``x + (q(x) - x).detach()``,
Bengio et al. 2013), and the clip does pass zero gradient outside the range, as a real converter saturates.
The ADC's output noise (``ConverterSpec.adc_noise``) is drawn fresh in every training forward from the hooks' own
generator (seeded, never torch's global one); while the objective scores sample ``k`` (``ConverterHooks.keyed``) it
reads the runtime's keyed stream of (seed, k, layer) instead, in example order, so the objective reads the very
noise the runtime's twin reads.
"""
from __future__ import annotations

from contextlib import contextmanager

import onnx
import torch
import torch.fx as fx

from ftcompile.passes.converters import ConverterSpec, crossbar_layers, layer_key, quantize
from ftcompile.passes.layers import find_layers


def _straight_through(x: torch.Tensor, lo: float, hi: float, bits: int) -> torch.Tensor:
    clipped = torch.clamp(x, lo, hi)
    return clipped + (quantize(x, lo, hi, bits) - clipped).detach()


class _Noise:
    """Where the ADCs' standard normals come from: a seeded torch generator (training), or a sample's
    ``drift.KeyedNoise`` (the objective)."""

    def __init__(self, seed: int):
        self.generator = torch.Generator().manual_seed(int(seed))
        self.keyed = None

    def draw(self, layer: str, like: torch.Tensor) -> torch.Tensor:
        if self.keyed is not None:
            return torch.from_numpy(self.keyed.draw(layer, like.numel())).view(like.shape).to(like.device, like.dtype)
        return torch.randn(like.shape, generator=self.generator, dtype=like.dtype).to(like.device)


class _DAC:
    def __init__(self, lo: float, hi: float, bits: int):
        self.lo, self.hi, self.bits = lo, hi, bits

    def __call__(self, module, inputs):
        return (_straight_through(inputs[0], self.lo, self.hi, self.bits),) + tuple(inputs[1:])


class _ADC:
    def __init__(self, key: str, bound: float, bits: int, noise: float, source: _Noise):
        self.key, self.bound, self.bits, self.noise, self.source = key, bound, bits, noise, source

    def read(self, y: torch.Tensor) -> torch.Tensor:
        """The ADC's reading of ``y`` plus read noise of std ``noise * bound`` (the twin's output noise)."""
        noisy = y + (self.noise * self.bound) * self.source.draw(self.key, y) if self.noise else y
        return _straight_through(noisy, -self.bound, self.bound, self.bits)

    def __call__(self, module, inputs, output):
        bias = getattr(module, "bias", None)
        if bias is None:
            return self.read(output)
        shaped = bias.view((1, -1) + (1,) * (output.dim() - 2)) if output.dim() > 2 else bias
        return self.read(output - shaped) + shaped


class ConverterHooks:
    """The hooks on a module's crossbar layers: ``remove()`` before export; ``keyed(seed, k)`` while scoring
    sample ``k`` (a context manager); ``noisy``: the ADCs read output noise."""

    def __init__(self, handles: list, noise: _Noise, noisy: bool):
        self.handles, self._noise, self.noisy = handles, noise, noisy

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []

    @contextmanager
    def keyed(self, seed: int, sample: int):
        from ftcompile.runtime.drift import KeyedNoise

        self._noise.keyed = KeyedNoise(seed, sample)
        try:
            yield
        finally:
            self._noise.keyed = None


def layer_keys(model: onnx.ModelProto) -> dict[str, str]:
    """Weight initializer name -> the calibration key (``node.name or output``) of its crossbar layer."""
    inits = {i.name for i in model.graph.initializer}
    keys = {}
    for node in crossbar_layers(model):
        weight = next(t for t in (node.input[1], node.input[0]) if t in inits)
        keys[weight] = layer_key(node)
    return keys


def attach_converters(gm: fx.GraphModule, sources: dict, model: onnx.ModelProto, ranges: dict,
                      spec: ConverterSpec, seed: int = 0) -> ConverterHooks:
    """Hooks on every crossbar layer of ``gm`` whose ONNX node ``ranges`` calibrated (``remove()`` them before
    export: the exported ONNX is the digital model, the twin is built at sign-off). ``sources``: the importer's
    state-dict key -> initializer map; ``seed``: of the training forwards' read noise."""
    keys = layer_keys(model)
    handles = []
    noise = _Noise(seed)
    for layer in find_layers(gm, sources):
        key = keys.get(layer.onnx_weight)
        if key is None or f"{key}:in" not in ranges:
            continue
        mod = gm.get_submodule(layer.target)
        if spec.dac_bits is not None:
            handles.append(mod.register_forward_pre_hook(_DAC(*ranges[f"{key}:in"], spec.dac_bits)))
        if spec.adc_bits is not None:
            handles.append(mod.register_forward_hook(_ADC(key, ranges[f"{key}:out"][1], spec.adc_bits,
                                                          spec.adc_noise, noise)))
    return ConverterHooks(handles, noise, bool(spec.adc_noise and spec.adc_bits is not None))
