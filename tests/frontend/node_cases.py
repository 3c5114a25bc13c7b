"""The node test cases of the onnx package (model, inputs, expected outputs), and running one through the importer.

The onnx wheel ships the cases as the Python that writes them (``onnx.backend.test.case.node``), not as files:
``collect_testcases`` builds all of them in memory once per session (a few seconds).
"""
from __future__ import annotations

import functools
import warnings

import numpy as np
import onnx
import torch

from ftcompile.frontend.dtypes import to_torch
from ftcompile.frontend.onnx_import import convert, prepare
from ftcompile.runtime.model import graph_inputs


@functools.lru_cache(maxsize=1)
def node_cases() -> dict:
    """name -> (model, [(inputs, outputs)], rtol, atol) of every node test case the onnx package defines."""
    from onnx.backend.test.case import node

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        cases = node.collect_testcases(None)
    return {c.name: (c.model, c.data_sets, c.rtol, c.atol) for c in cases}


def as_numpy(t: torch.Tensor) -> np.ndarray:
    if t.dtype in (torch.bfloat16, torch.float8_e4m3fn, torch.float8_e4m3fnuz, torch.float8_e5m2,
                   torch.float8_e5m2fnuz):
        return t.float().numpy()
    return t.detach().numpy()


def run(model: onnx.ModelProto, inputs: list) -> list[np.ndarray]:
    """Import ``model`` with every graph output and run it once on ``inputs`` (in ``graph.input`` order)."""
    proto = prepare(model)
    outputs = [o.name for o in proto.graph.output]
    module, _ = convert(proto, outputs)
    by_name = dict(zip([i.name for i in model.graph.input], inputs))
    args = [to_torch(np.asarray(by_name[v.name])) for v in graph_inputs(proto)]
    with torch.no_grad():
        got = module(*args)
    got = list(got) if len(outputs) > 1 else [got]
    return [as_numpy(g) if torch.is_tensor(g) else np.asarray(g) for g in got]


def assert_matches(got: list, want: list, rtol: float, atol: float) -> None:
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        w = np.asarray(w)
        if w.dtype.name in ("bfloat16",) or w.dtype.name.startswith("float8"):
            w = w.astype(np.float32)
        assert g.dtype == w.dtype, f"output {i}: dtype {g.dtype}, want {w.dtype}"
        assert g.shape == w.shape, f"output {i}: shape {g.shape}, want {w.shape}"
        if w.dtype.kind in "fc":
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, equal_nan=True, err_msg=f"output {i}")
        else:
            np.testing.assert_array_equal(g, w, err_msg=f"output {i}")
