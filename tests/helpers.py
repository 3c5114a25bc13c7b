"""Tiny models and data built in the tests (no torch needed here, no downloads)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def teacher_mlp(sizes=(16, 32, 4), seed: int = 0, opset: int = 17, dynamic_batch: bool = True) -> onnx.ModelProto:
    """An MLP written with onnx.helper: Gemm(transB) -> Relu -> ... -> Gemm."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    prev = "x"
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        w = (rng.standard_normal((b, a)) / np.sqrt(a)).astype(np.float32)
        bias = (0.1 * rng.standard_normal(b)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"fc{i}.weight"), numpy_helper.from_array(bias, f"fc{i}.bias")]
        out = f"h{i}"
        nodes.append(helper.make_node("Gemm", [prev, f"fc{i}.weight", f"fc{i}.bias"], [out], name=f"fc{i}", transB=1))
        prev = out
        if i < len(sizes) - 2:
            nodes.append(helper.make_node("Relu", [prev], [f"r{i}"], name=f"relu{i}"))
            prev = f"r{i}"
    nodes.append(helper.make_node("Identity", [prev], ["logits"], name="out"))
    batch = "N" if dynamic_batch else 1
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, sizes[0]])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, sizes[-1]])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def numpy_forward(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    h = x
    for node in model.graph.node:
        if node.op_type == "Gemm":
            h = h @ inits[node.input[1]].T + inits[node.input[2]]
        elif node.op_type == "Relu":
            h = np.maximum(h, 0)
    return h


def teacher_files(tmp: Path, n: int = 400, seed: int = 0, sizes=(16, 32, 4)) -> tuple[Path, Path]:
    """model.onnx and data.npz whose labels are the model's own predictions: clean accuracy is 1."""
    model = teacher_mlp(sizes, seed=seed)
    x = np.random.default_rng(seed + 1).standard_normal((n, sizes[0])).astype(np.float32)
    y = numpy_forward(model, x).argmax(1).astype(np.int64)
    mpath, dpath = tmp / "model.onnx", tmp / "data.npz"
    onnx.save(model, mpath)
    np.savez(dpath, x=x, y=y)
    return mpath, dpath
