"""Parity of a torch graph against onnxruntime on random inputs of the model's shape."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
import torch

from ftcompile.errors import ParityError
from ftcompile.runtime.model import elem_dtype, graph_inputs, input_shape


@dataclass(frozen=True)
class Parity:
    """Worst disagreement: ``max_abs`` over outputs, relative to the largest reference magnitude."""

    max_abs: float
    rel: float
    rtol: float
    batch: int

    @property
    def ok(self) -> bool:
        return self.rel <= self.rtol


def random_feeds(model: onnx.ModelProto, batch: int = 3, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {}
    for v in graph_inputs(model):
        dims = [d if isinstance(d, int) and d > 0 else batch for d in input_shape(v)]
        dtype = elem_dtype(v)
        feeds[v.name] = (rng.standard_normal(dims).astype(dtype) if np.issubdtype(dtype, np.floating)
                         else rng.integers(0, 2, dims).astype(dtype))
    return feeds


def compare(model: onnx.ModelProto, module: torch.nn.Module, output: str, *, rtol: float = 1e-4,
            batch: int = 3) -> Parity:
    feeds = random_feeds(model, batch)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    ref = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"]).run(
        [output], feeds)[0]
    was_training = module.training
    module.eval()
    with torch.no_grad():
        got = module(*[torch.from_numpy(feeds[v.name]) for v in graph_inputs(model)]).numpy()
    module.train(was_training)
    if got.shape != ref.shape:
        return Parity(float("inf"), float("inf"), rtol, batch)
    max_abs = float(np.max(np.abs(got.astype(np.float64) - ref))) if ref.size else 0.0
    scale = max(float(np.max(np.abs(ref))) if ref.size else 0.0, 1e-6)
    return Parity(max_abs, max_abs / scale, rtol, batch)


def check_import_parity(imported, *, rtol: float = 1e-4) -> Parity:
    parity = compare(imported.onnx_model, imported.module, imported.output, rtol=rtol)
    if not parity.ok:
        raise ParityError(f"imported graph disagrees with onnxruntime on output {imported.output!r}: max abs diff "
                          f"{parity.max_abs:.3g} ({parity.rel:.3g} of its range, tolerance {rtol:g}); "
                          "please report the model, or check it with `ftcompile inspect`.")
    return parity
