"""A chip's twin inside torch training: every crossbar module of an imported model computes what
``passes/chip_twin.py`` computes, tile by tile, with the same formulas and (while the objective scores sample ``k``)
the same keyed noise and the same compensation factors as the runtime's twin.

Each module's ``forward`` is replaced (``remove()`` restores it) by one that splits the input channels and the
weight over the layer's tiles, and per tile: clips the input to its range ``r`` (learned when the chip learns input
ranges: one ``torch.nn.Parameter`` per tile, ``ftcompile_input_range_<i>_<j>``, trained with the model), quantizes
it, takes the analog product, adds IR drop, read noise and output noise, quantizes with the ADC, multiplies by the
drift compensation factor, and sums the tiles.

Gradients, as aihwkit's hardware-aware training takes them (``simulator/tiles/inference_torch.py``,
``periphery.py``): the product of the quantized input passes straight through the rounding (Bengio et al. 2013) and
through the ADC except where it saturates (aihwkit's output-bound mask); the non-ideal rest of the output (IR drop,
noise, rounding) is a constant to the weights, and reaches ``r`` as aihwkit's output scaling ``r s`` passes it
(the rest divided by ``r``); ``r`` also takes aihwkit's input-range gradient (``InputRangeForward``: the clipped
inputs' gradient, relative to ``r`` and scaled by ``gradient_scale``, plus ``decay * r`` while fewer than
``1 - input_min_percentage`` of the inputs clip).

The column scales ``s`` of a tile are those of the module's own (clean) weights, the ones the chip is programmed
with, even while the objective runs it on drifted copies (``functional_call``). During training the drift
compensation is folded into the sampled weights (``tiles.ChipDrift.apply_torch_named``); while scoring sample
``k`` the factors are the runtime's own (``ChipDrift.compensation``).
"""
from __future__ import annotations

from contextlib import contextmanager

import onnx
import torch
import torch.fx as fx
import torch.nn.functional as F

from ftcompile.passes.chip_twin import chip_layers, column_scales, ir_drop_factors
from ftcompile.passes.converter_hooks import _Noise, layer_keys
from ftcompile.passes.layers import find_layers

RANGE_PARAM = "ftcompile_input_range"


class _InputRange(torch.autograd.Function):
    """``clamp(x, -r, r)`` with aihwkit's input-range gradient for ``r`` (module doc)."""

    @staticmethod
    def forward(ctx, x, r, chip):
        ctx.save_for_backward(x, r)
        ctx.chip = chip
        return torch.maximum(torch.minimum(x, r), -r)

    @staticmethod
    def backward(ctx, g):
        x, r = ctx.saved_tensors
        chip = ctx.chip
        upper, lower = x >= r, x <= -r
        grad_r = (g * upper).clamp(max=0).sum() - (g * lower).clamp(min=0).sum()
        if chip.gradient_relative:
            grad_r = grad_r * r * chip.gradient_scale
        if chip.decay > 0:
            inside = (x.abs() < r).float().mean()
            grad_r = grad_r + chip.decay * r * (inside > chip.input_min_percentage)
        return g * ~(upper | lower), grad_r.reshape(r.shape), None


class _TiledForward:
    """The replacement ``forward`` of one crossbar module (module doc)."""

    def __init__(self, mod: torch.nn.Module, layer, chip, ranges: dict, learn: bool):
        self.mod, self.layer, self.chip, self.hooks = mod, layer, chip, None
        self.param = mod.weight  # the clean weights: the column scales the chip is programmed with
        self.transposed = isinstance(mod, torch.nn.modules.conv._ConvTransposeNd)
        self.feature = -1 if isinstance(mod, torch.nn.Linear) else 1
        self.ranges = {}
        for tile in layer.tiles:
            r = torch.tensor([float(ranges[f"{tile.key}:in"][1])], dtype=mod.weight.dtype, device=mod.weight.device)
            if learn:
                name = f"{RANGE_PARAM}_{tile.i}_{tile.j}"
                mod.register_parameter(name, torch.nn.Parameter(r))
                self.ranges[tile.key] = name
            else:
                self.ranges[tile.key] = r
        self.ir = {t.key: torch.from_numpy(ir_drop_factors(layer, t, chip.ir_drop)).to(mod.weight.dtype)
                   for t in layer.tiles}

    def _canonical(self, w):
        return w.transpose(0, 1) if self.transposed else w

    def product(self, x, w):
        """The module's analog product of ``x`` and a weight block ``w`` (module layout), without bias."""
        mod = self.mod
        if isinstance(mod, torch.nn.Linear):
            return F.linear(x, w)
        if self.transposed:
            fn = getattr(F, f"conv_transpose{len(mod.kernel_size)}d")
            return fn(x, w, None, mod.stride, mod.padding, mod.output_padding, mod.groups, mod.dilation)
        return mod._conv_forward(x, w, None)

    def _column(self, v, like):
        return v.view(-1) if self.feature == -1 else v.view((1, -1) + (1,) * (like.dim() - 2))

    def __call__(self, x):
        mod, chip, layer = self.mod, self.chip, self.layer
        w = self._canonical(mod.weight)
        clean = self._canonical(self.param.detach())
        factors = self.hooks.factors()
        parts: dict[int, list] = {}
        for tile in layer.tiles:
            r = self.ranges[tile.key]
            r = getattr(mod, r) if isinstance(r, str) else r.to(x.device)
            width = tile.chans.stop - tile.chans.start
            xi = x if len(layer.rows) == 1 else x.narrow(self.feature, tile.chans.start, width)
            xc = _InputRange.apply(xi, r, chip) if r.requires_grad else torch.maximum(torch.minimum(xi, r), -r)
            xq = xc
            if chip.inp_res:
                step = (2 * r / chip.inp_res).detach()
                xq = xc + (torch.round(xc / step) * step - xc).detach()
            wt = w[tile.cols, tile.chans]
            wt_mod = self._canonical(wt)
            s = column_scales(clean[tile.cols, tile.chans])
            ideal = self.product(xq, wt_mod)
            y = self._read(ideal, xq, wt_mod, s, r.detach(), tile)
            alpha = None if factors is None else factors.get(tile.key)
            if alpha is not None:
                y = y * self._column(torch.from_numpy(alpha).to(y.device, y.dtype), y)
            parts.setdefault(tile.j, []).append(y)
        sums = [p[0] if len(p) == 1 else torch.stack(p).sum(0) for _, p in sorted(parts.items())]
        out = sums[0] if len(sums) == 1 else torch.cat(sums, self.feature)
        bias = getattr(mod, "bias", None)
        if bias is None:
            return out
        return out + (bias if self.feature == -1 else bias.view((1, -1) + (1,) * (out.dim() - 2)))

    def _read(self, ideal, xq, wt, s, r, tile):
        """The tile's ADC reading of the ideal product (IR drop, read noise, output noise, quantization, clip), with
        the gradients of the module doc."""
        chip = self.chip
        col = lambda v: self._column(v, ideal)  # noqa: E731
        with torch.no_grad():
            y = ideal.detach().clone()
            if chip.ir_drop:
                a = self.product(xq.abs(), wt.abs()) * col(tile.rows / chip.ir_drop_g_ratio / (r * s))
                c = a * (a * (0.05 * a - 0.2) + 0.5)
                f = self._canonical(self.ir[tile.key].to(wt.device))
                y = y - c * self.product(xq, wt * f)
            var = None  # read noise and output noise: one draw of their summed variance, as the twin draws it
            if chip.w_noise and chip.w_noise_type == "pcm_read":
                var = self.product(xq * xq, wt.abs()).clamp(min=0) * col(chip.w_noise ** 2 * s)
            if chip.out_noise:
                out_var = col((chip.out_noise * r * s) ** 2)
                var = out_var if var is None else var + out_var
            if var is not None:
                y = y + torch.sqrt(var) * self.hooks.noise.draw(tile.key, y)
            bound = col(chip.out_bound * r * s)
            if chip.out_res:
                step = 2 * bound / chip.out_res
                y = torch.round(y / step) * step
            y = torch.maximum(torch.minimum(y, bound), -bound)
            saturated = y.abs() >= bound
            rest = y - ideal
        out = torch.where(saturated, y, ideal + rest)
        r_param = self.ranges[tile.key]
        if isinstance(r_param, str):  # the rest reaches r as aihwkit's output scaling r * s passes it
            rp = getattr(self.mod, r_param)
            out = out + (rest / r) * (rp - rp.detach())
        return out


class ChipHooks:
    """The chip's twin on a module's crossbar layers: ``remove()`` before export; ``keyed(seed, k)`` while scoring
    sample ``k`` (a context manager: keyed noise and sample ``k``'s compensation factors); ``ranges()``: the tiles'
    input ranges now (learned ones after training)."""

    noisy = True  # the per-sample path: every read is keyed by sample (noise and compensation factors)

    def __init__(self, forwards: list, noise: _Noise, drift=None):
        self.forwards, self.noise, self.drift = forwards, noise, drift
        self._sample = None
        for f in forwards:
            f.hooks = self

    def factors(self) -> dict | None:
        if self._sample is None or self.drift is None or not hasattr(self.drift, "compensation"):
            return None
        return self.drift.compensation(*self._sample)

    @contextmanager
    def keyed(self, seed: int, sample: int):
        from ftcompile.runtime.drift import KeyedNoise

        self.noise.keyed, self._sample = KeyedNoise(seed, sample), (int(seed), int(sample))
        try:
            yield
        finally:
            self.noise.keyed, self._sample = None, None

    def ranges(self) -> dict[str, tuple[float, float]]:
        out = {}
        for f in self.forwards:
            for key, r in f.ranges.items():
                value = float((getattr(f.mod, r) if isinstance(r, str) else r).detach().abs().reshape(-1)[0])
                out[f"{key}:in"] = (-value, value)
        return out

    def remove(self) -> None:
        for f in self.forwards:
            f.mod.__dict__.pop("forward", None)
            for name in [n for n in f.mod._parameters if n.startswith(RANGE_PARAM)]:
                del f.mod._parameters[name]
        self.forwards = []


def attach_chip(gm: fx.GraphModule, sources: dict, model: onnx.ModelProto, ranges: dict, chip, *, drift=None,
                seed: int = 0, learn: bool = False) -> ChipHooks:
    """The chip's twin on every crossbar layer of ``gm`` (``model``: its ONNX graph, unshared; ``ranges``: the tiles'
    input ranges; ``drift``: the ``tiles.ChipDrift`` the objective draws with, whose compensation factors the twin
    reads; ``seed``: of the training forwards' noise; ``learn``: the input ranges become trained parameters)."""
    keys = layer_keys(model)
    plans = {layer.layer: layer for layer in chip_layers(model, chip)}
    forwards = []
    for layer in find_layers(gm, sources):
        plan = plans.get(keys.get(layer.onnx_weight))
        if plan is None:
            continue
        mod = gm.get_submodule(layer.target)
        forward = _TiledForward(mod, plan, chip, ranges, learn)
        mod.forward = forward
        forwards.append(forward)
    return ChipHooks(forwards, _Noise(seed), drift)
