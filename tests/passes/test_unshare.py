"""Shared initializers (TorchScript exporter): every layer gets its own weights, drifts and trains alone."""
import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from ftcompile.api import open_session
from ftcompile.cli import app
from ftcompile.export import to_onnx
from ftcompile.frontend import import_onnx
from ftcompile.passes.onnx_graph import unshare_weights
from ftcompile.runtime.drift import LogNormalDrift, draw_sample


def shared_model() -> onnx.ModelProto:
    """Two 8x8 layers read one weight (the second through an Identity) and one all-zero bias."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array((rng.standard_normal((8, 8)) / 3).astype(np.float32), "w")
    zero = numpy_helper.from_array(np.zeros(8, np.float32), "zero")
    head = numpy_helper.from_array((rng.standard_normal((4, 8)) / 3).astype(np.float32), "head")
    nodes = [helper.make_node("Identity", ["w"], ["w_alias"], name="alias"),
             helper.make_node("Gemm", ["x", "w", "zero"], ["h0"], name="fc0", transB=1),
             helper.make_node("Relu", ["h0"], ["r0"]),
             helper.make_node("Gemm", ["r0", "w_alias", "zero"], ["h1"], name="fc1", transB=1),
             helper.make_node("Relu", ["h1"], ["r1"]),
             helper.make_node("Gemm", ["r1", "head"], ["y"], name="fc2", transB=1)]
    graph = helper.make_graph(nodes, "shared", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], [w, zero, head])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _run(model, x):
    return ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]


def test_unshare_gives_each_layer_its_own_tensors_and_keeps_the_function():
    model = shared_model()
    x = np.random.default_rng(1).standard_normal((5, 8)).astype(np.float32)
    out = unshare_weights(model)
    gemms = [n for n in out.graph.node if n.op_type == "Gemm"]
    assert not any(n.op_type == "Identity" for n in out.graph.node)
    assert len({n.input[1] for n in gemms}) == 3 and len({n.input[2] for n in gemms[:2]}) == 2
    np.testing.assert_array_equal(_run(out, x), _run(model, x))
    assert onnx.load_from_string(model.SerializeToString()) == model  # the input is untouched


def test_layers_sharing_a_tensor_drift_independently():
    session = open_session(shared_model())
    gemms = {t.node: t.name for t in session.targets if t.role == "weight"}
    assert len(set(gemms.values())) == 3
    drawn = draw_sample(LogNormalDrift(0.5), session.weights, seed=0, sample=0)
    assert not np.allclose(drawn[gemms["fc0"]], drawn[gemms["fc1"]])


def test_each_layer_is_written_back_with_its_own_values(tmp_path):
    imported = import_onnx(shared_model())
    with torch.no_grad():
        imported.module.get_submodule("fc0").weight.mul_(1.5)
        imported.module.get_submodule("fc1").bias.add_(0.3)
    x = np.random.default_rng(2).standard_normal((5, 8)).astype(np.float32)
    want = imported.module(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(_run(to_onnx(imported), x), want, rtol=1e-5, atol=1e-5)


def test_harden_runs_on_a_model_with_shared_tensors(tmp_path):
    model = tmp_path / "shared.onnx"
    onnx.save(shared_model(), model)
    x = np.random.default_rng(3).standard_normal((120, 8)).astype(np.float32)
    y = _run(shared_model(), x).argmax(1)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    r = CliRunner().invoke(app, ["harden", str(model), "--train", str(tmp_path / "d.npz"), "--val",
                                 str(tmp_path / "d.npz"), "--trials", "1", "--epochs", "1", "--final-epochs", "1",
                                 "--samples", "2", "--validate-samples", "2", "--no-plot", "--quiet"])
    assert r.exit_code == 0, r.output


def test_batchnorm_running_statistics_shared_by_two_layers_are_unshared():
    """The dynamo exporter stores the mean-0/variance-1 statistics of fresh BatchNorms once; after fine-tuning
    each layer's differ, so each needs its own (a DenseNet-121 export disagreed by 40% of its range)."""
    rng = np.random.default_rng(0)
    t = lambda name, a: numpy_helper.from_array(np.asarray(a, np.float32), name)  # noqa: E731
    inits = [t("w0", rng.standard_normal((4, 3, 3, 3))), t("w1", rng.standard_normal((4, 4, 3, 3))),
             t("g0", np.ones(4)), t("b0", np.zeros(4)), t("g1", np.ones(4)) , t("b1", np.zeros(4)),
             t("mean", np.zeros(4)), t("var", np.ones(4))]
    nodes = [helper.make_node("Conv", ["x", "w0"], ["c0"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c0", "g0", "b0", "mean", "var"], ["n0"]),
             helper.make_node("Conv", ["n0", "w1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c1", "g1", "b1", "mean", "var"], ["y"])]
    g = helper.make_graph(nodes, "bn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 5, 5])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 5, 5])], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    imported = import_onnx(model)
    bns = [m for m in imported.module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        bns[0].running_mean.add_(0.5)
        bns[1].running_var.mul_(3.0)
    x = np.random.default_rng(1).standard_normal((2, 3, 5, 5)).astype(np.float32)
    want = imported.module(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(ort.InferenceSession(to_onnx(imported).SerializeToString()).run(None, {"x": x})[0],
                               want, rtol=1e-5, atol=1e-5)
