"""The drift-injecting onnxruntime session: built once, fed drifted weight copies per sample."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from ftcompile.data import InputSpec
from ftcompile.errors import ConfigError, FtcompileError, ModelError, UnsupportedModelError, one_line
from ftcompile.passes.onnx_graph import (
    DriftTarget,
    constants_to_initializers,
    find_drift_targets,
    initializer_arrays,
    unshare_weights,
    weights_to_inputs,
)
from ftcompile.passes.qdq import dequantize_weights
from ftcompile.runtime.model import choose_output, elem_dtype, graph_inputs, input_shape, load_onnx
from ftcompile.runtime.tasks import check_task, detection_outputs

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


class DriftSession:
    """One onnxruntime session whose drifting initializers are graph inputs.

    Example:
        >>> s = DriftSession("model.onnx")                      # doctest: +SKIP
        >>> logits = s.run({"x": x}, s.weights)                  # clean pass  # doctest: +SKIP
    """

    def __init__(self, model: "str | Path | onnx.ModelProto", *, targets: str = "params", bias: bool = False,
                 output: str | None = None, provider: str = "cpu", threads: int = 0, converters=None,
                 calibration=None, task: str = "classification"):
        """``converters`` runs the analog twin at the ranges of ``calibration`` (a ``passes.converters.Calibration``):
        a ``passes.converters.ConverterSpec`` (DAC/ADC quantizers around every crossbar layer) or a chip
        (``runtime.devices.chip.Chip``: every layer on its tiles, ``passes.chip_twin``)."""
        proto = load_onnx(model)
        self.task = check_task(task)
        self.source = str(model) if not isinstance(model, onnx.ModelProto) else "<in-memory model>"
        self.converters, self.calibration = converters, calibration
        # fed noise input -> (its stream's key, its layer's key, the share of the layer's outputs it reads: n / total)
        self.noise_feeds: dict[str, tuple[str, str, int, int]] = {}
        self.chip_layers: list = []  # the layers on a chip's tiles (runtime.devices.tiles.LayerTiles)
        self._noise_sizes: dict = {}
        try:
            prepared = self._prepare(proto, targets, bias, output, calibration)
        except FtcompileError:
            raise
        except Exception as exc:  # a model onnx's checker passed but that the graph passes cannot read
            raise ModelError(f"{self.source}: cannot prepare the model for drift injection ({type(exc).__name__}: "
                             f"{one_line(exc, last=True)}); re-export it.") from None
        if provider not in PROVIDERS:
            raise ConfigError(f"provider {provider!r} is unknown; use one of {sorted(PROVIDERS)}.")
        available = ort.get_available_providers()
        if PROVIDERS[provider] not in available:  # never fall back silently: the report names what ran
            raise ConfigError(f"--provider {provider}: this onnxruntime has no {PROVIDERS[provider]} (it has "
                              f"{', '.join(available)}); install onnxruntime-gpu or use --provider cpu.")
        chosen = [PROVIDERS[provider]] + ([PROVIDERS["cpu"]] if provider != "cpu" else [])
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(prepared.SerializeToString(), opts, providers=chosen)
        except Exception as exc:  # onnxruntime's own checks (types, shapes, ops) on a model onnx accepted
            raise UnsupportedModelError(f"{self.source}: onnxruntime cannot load the model "
                                        f"({one_line(exc, last=True)}); re-export it with a supported opset.") from None
        self.provider = self.session.get_providers()[0]

    def _prepare(self, proto: onnx.ModelProto, targets: str, bias: bool, output: str | None,
                 calibration=None) -> onnx.ModelProto:
        # each layer drifts on its own; a QDQ model's quantized weights drift as the values they program
        proto = dequantize_weights(unshare_weights(constants_to_initializers(proto)))
        self._digital = proto
        if self.converters is not None:
            proto = self._twin(proto, calibration)
        self.targets: list[DriftTarget] = find_drift_targets(proto, targets=targets, bias=bias)
        if not self.targets:
            raise UnsupportedModelError(f"{self.source}: no drifting weights found (no Conv/ConvTranspose/Gemm/MatMul "
                                        "with initializer weights); export the model with its weights embedded.")
        empty = [t for t in self.targets if t.size == 0]
        if empty:
            raise ModelError(f"{self.source}: weight {empty[0].name!r} of {empty[0].node} has no elements (shape "
                             f"{list(empty[0].shape)}); the export lost it, re-export the model.")
        if self.task == "detection":  # boxes, scores (and labels): several outputs, one image per run
            self.output_names = detection_outputs(proto.graph.output)
            self.output, self.num_classes = self.output_names[0], None
        else:
            self.output = choose_output(proto, output)
            self.output_names = [self.output]
            self.num_classes = _num_classes(proto, self.output, axis=1 if self.task == "segmentation" else -1)
            if self.num_classes is not None and self.num_classes < 1:  # no label could be right: the model's fault
                raise ModelError(f"{self.source}: output {self.output!r} declares {self.num_classes} classes; the "
                                 "export is broken, re-export the model.")
        from ftcompile.runtime.devices.tiles import COMP_PREFIX

        fed = [t.name for t in self.targets] + [i.name for i in proto.graph.initializer
                                                 if i.name.startswith(COMP_PREFIX)]
        self.weights = initializer_arrays(proto, fed)  # with a chip: its tiles' compensation inputs (ones: none)
        self.inputs = [InputSpec(v.name, tuple(input_shape(v)), elem_dtype(v)) for v in graph_inputs(proto)
                       if v.name not in self.noise_feeds]
        return weights_to_inputs(proto, fed)

    def _twin(self, proto: onnx.ModelProto, calibration) -> onnx.ModelProto:
        """The analog twin of the (digital, unshared) ``proto`` with fed noise; records its noise inputs."""
        from ftcompile.passes.converters import NOISE_PREFIX, insert_converters
        from ftcompile.runtime.devices.chip import Chip

        if isinstance(self.converters, Chip):
            from ftcompile.passes.chip_twin import chip_layers, insert_chip, noise_streams

            self.chip_layers = chip_layers(proto, self.converters)
            self.noise_feeds = noise_streams(self.chip_layers, self.converters)
            return insert_chip(proto, calibration.ranges, self.converters, expose_weights=False, noise="fed")
        twin = insert_converters(proto, calibration.ranges, self.converters, expose_weights=False, noise="fed")
        keys = [i.name[len(NOISE_PREFIX):] for i in twin.graph.input if i.name.startswith(NOISE_PREFIX)]
        self.noise_feeds = {NOISE_PREFIX + key: (key, key, 1, 1) for key in keys}
        return twin

    @property
    def noise_layers(self) -> dict[str, str]:
        """Fed noise input -> its stream's key (empty: the twin reads no noise)."""
        return {name: feed[0] for name, feed in self.noise_feeds.items()}

    def tiled(self, drift):
        """``drift`` as this session draws it: per tile on a chip (``devices.tiles.ChipDrift``), else as it is."""
        if not self.chip_layers or hasattr(drift, "draw_sample"):
            return drift
        from ftcompile.runtime.devices.tiles import ChipDrift

        return ChipDrift(drift, tuple(self.chip_layers))

    def run(self, feeds: dict, weights: dict, noise=None) -> np.ndarray:
        """The chosen output for one batch, with ``weights`` (name -> array) in place of the stored ones."""
        return self.run_all(feeds, weights, noise)[0]

    def run_all(self, feeds: dict, weights: dict, noise=None) -> list[np.ndarray]:
        """Every output the task reads (``output_names``), for one batch. ``noise`` (a ``drift.KeyedNoise``) gives
        the twin's output noise when it has some; it is read in example order, so batches must come in order."""
        if self.noise_feeds and not set(self.noise_feeds) <= set(feeds):
            feeds = {**feeds, **self.draw_noise(feeds, noise)}
        try:
            return self.session.run(self.output_names, {**feeds, **weights})
        except Exception as exc:  # e.g. a reshape that does not fit the data: name the model, not a traceback
            raise ModelError(f"{self.source}: onnxruntime failed running the model ({one_line(exc, last=True)}); "
                             "check that the data matches the model's input and the model runs in "
                             "onnxruntime.") from None


    def draw_noise(self, feeds: dict, noise) -> dict[str, np.ndarray]:
        """The twin's noise inputs for one batch of ``feeds``: each stream's next values (``noise``, the sample's
        ``drift.KeyedNoise``), exactly as many as the batch reads."""
        if noise is None:
            raise ValueError("this twin reads output noise: pass the sample's KeyedNoise")
        sizes = self._noise_counts(feeds)
        return {name: noise.draw(stream, sizes[layer] // total * n)
                for name, (stream, layer, n, total) in self.noise_feeds.items()}

    def _noise_counts(self, feeds: dict) -> dict[str, int]:
        """How many outputs each noisy layer has in a run on ``feeds``: per example (from one probe run on the first
        example, once per example shape) times the batch, or per image for a detector's unbatched runs."""
        batched = self.task != "detection"
        key = tuple((k, v.shape[1:] if batched else v.shape) for k, v in sorted(feeds.items()))
        per = self._noise_sizes.get(key)
        if per is None:
            from ftcompile.passes.converters import products_probe

            probe, names = products_probe(self._digital)
            one = {k: v[:1] if batched else v for k, v in feeds.items()}
            layers = sorted({feed[1] for feed in self.noise_feeds.values()})
            values = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"]).run(
                [names[f"{layer}:out"] for layer in layers], one)
            per = self._noise_sizes[key] = {layer: int(v.size) for layer, v in zip(layers, values)}
        n = len(next(iter(feeds.values()))) if batched else 1
        return {layer: count * n for layer, count in per.items()}


def _num_classes(model: onnx.ModelProto, output: str, axis: int = -1) -> int | None:
    out = next(o for o in model.graph.output if o.name == output)
    dims = input_shape(out)
    return dims[axis] if len(dims) > max(axis, -axis - 1) and isinstance(dims[axis], int) else None
