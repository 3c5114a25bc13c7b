"""QDQ models: fake quantization with a straight-through gradient, weights fine-tuned on their grid and written back
as the same 8-bit integers with the same scales and zero points (onnxruntime's own quantizer makes the models)."""
import io
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn
from torch.func import functional_call

from ftcompile.export import to_onnx
from ftcompile.frontend import import_onnx
from ftcompile.frontend.quantize import fake_quantize
from ftcompile.passes import find_layers
from ftcompile.passes.onnx_graph import find_drift_targets
from ftcompile.passes.qdq import dequantize_weights
from ftcompile.search.trainer import TrainConfig, fine_tune

QUANTIZERS = ("QuantizeLinear", "DequantizeLinear")


def qdq_cnn(tmp_path, per_channel: bool) -> tuple[onnx.ModelProto, np.ndarray]:
    """A conv -> relu -> linear classifier, statically quantized to int8 QDQ by onnxruntime's quantizer."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).eval()
    x = torch.randn(48, 1, 6, 6)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x[:1],), buf, dynamo=False, opset_version=17, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "N"}, "y": {0: "N"}})
    (tmp_path / "float.onnx").write_bytes(buf.getvalue())

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"x": x[i:i + 8].numpy()} for i in range(0, 48, 8)])

        def get_next(self):
            return next(self.batches, None)

    out = tmp_path / "qdq.onnx"
    quantize_static(str(tmp_path / "float.onnx"), str(out), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=per_channel, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    return onnx.load(str(out)), x.numpy()


def _quantizer_params(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Every scale and zero point the model's quantizers read."""
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return {name: inits[name] for n in model.graph.node if n.op_type in QUANTIZERS for name in n.input[1:]
            if name in inits}


def _stored_weights(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return {n.input[0]: inits[n.input[0]] for n in model.graph.node
            if n.op_type == "DequantizeLinear" and n.input[0] in inits}


@pytest.mark.parametrize("per_channel", [False, True])
def test_qdq_imports_fine_tunes_and_writes_back_on_the_grid(tmp_path, per_channel):
    proto, x = qdq_cnn(tmp_path, per_channel)
    imported = import_onnx(proto)
    assert imported.parity.ok and imported.parity.max_abs < 1e-5
    layers = find_layers(imported.module, imported.sources)
    assert [layer.kind for layer in layers] == ["Conv2d", "Linear"]
    assert all(imported.sources[f"{layer.target}.weight"].grid.dtype == torch.int8 for layer in layers)
    # the activations' Q -> DQ pairs are fake quantizers in the graph
    assert sum(n.target is fake_quantize for n in imported.module.graph.nodes) == 4

    labels = ort.InferenceSession(proto.SerializeToString()).run(None, {"x": x})[0].argmax(1)
    labels = (labels + 1) % 3  # other labels than the model's: the fine-tune has to move the weights
    fine_tune(imported.module, torch.from_numpy(x), torch.from_numpy(labels), TrainConfig(epochs=3, lr=1e-2,
                                                                                           batch_size=16))
    out = to_onnx(imported)

    # the graph and every quantizer's scale and zero point are the source's, byte for byte
    assert [(n.op_type, list(n.input), list(n.output)) for n in out.graph.node] == \
        [(n.op_type, list(n.input), list(n.output)) for n in proto.graph.node]
    before, after = _quantizer_params(proto), _quantizer_params(out)
    assert before.keys() == after.keys() and all(np.array_equal(before[k], after[k]) for k in before)
    # the weights are integers again, fine-tuned, and exactly what the torch layers compute with
    old, new = _stored_weights(proto), _stored_weights(out)
    for layer in layers:
        src = imported.sources[f"{layer.target}.weight"]
        assert new[src.name].dtype == np.int8 and new[src.name].shape == old[src.name].shape
        assert not np.array_equal(new[src.name], old[src.name])
        grid = src.grid
        on_grid = imported.module.get_submodule(layer.target).weight.detach()
        scale = grid.scale.reshape(-1, *([1] * (on_grid.dim() - 1))) if grid.scale.numel() > 1 else grid.scale
        np.testing.assert_allclose((on_grid / scale).numpy(), new[src.name], atol=1e-3)
    got = ort.InferenceSession(out.SerializeToString()).run(None, {"x": x})[0]
    with torch.no_grad():
        want = imported.module.eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert (got.argmax(1) == labels).mean() > 0.5  # 0 before: the written-back 8-bit model learned them


def test_fake_quantize_is_the_quantizer_forward_and_straight_through_backward():
    scale, zero = torch.tensor(0.1), torch.tensor(0, dtype=torch.int8)
    x = torch.tensor([-20.0, -0.26, 0.04, 0.15, 12.7, 13.0], requires_grad=True)
    y = fake_quantize(x, scale, zero, dtype=torch.int8)
    np.testing.assert_allclose(y.detach().numpy(), [-12.8, -0.3, 0.0, 0.2, 12.7, 12.7], rtol=1e-6)
    y.sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 0.0]  # identity inside the int8 range, 0 clipped


def test_a_drifted_weight_is_the_programmed_8_bit_weight_drifted(tmp_path):
    """``functional_call`` puts ``w * d`` in the weight's place (the objective's and trainer's drift): a layer on a
    grid reads ``snap(w) * d`` where ``w`` is on the grid, as the chip's programmed integers drift."""
    proto, x = qdq_cnn(tmp_path, True)
    imported = import_onnx(proto)
    name = next(k for k, s in imported.sources.items() if s.grid is not None and k.endswith("weight"))
    layer = imported.module.get_submodule(name.rsplit(".", 1)[0])
    w = dict(imported.module.named_parameters())[name]
    d = torch.exp(0.3 * torch.randn(w.shape, generator=torch.Generator().manual_seed(0)))
    seen = {}

    def read(drifted):  # the weight the layer computes with when the objective puts ``drifted`` in its place
        hook = layer.register_forward_hook(lambda m, i, o: seen.update(w=m.weight.detach().clone()))
        functional_call(imported.module, {name: drifted}, (torch.from_numpy(x[:2]),))
        hook.remove()
        return seen["w"]

    torch.testing.assert_close(read(w * d), w.detach() * d)  # on the grid at import: exactly the drifted integers
    with torch.no_grad():  # fine-tuned off the grid
        w.add_(0.004 * torch.randn(w.shape, generator=torch.Generator().manual_seed(1)))
    snapped = layer.weight.detach()
    assert not torch.equal(snapped, w.detach())
    # off the grid: snap(w) + w (d - 1), which differs from snap(w) d by (snap(w) - w)(d - 1), second order
    torch.testing.assert_close(read(w * d), snapped + w.detach() * (d - 1))


def test_float_weight_behind_a_quantize_dequantize_pair_trains_as_float_and_quantizes_at_run_time():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 4)).astype(np.float32)
    inits = [numpy_helper.from_array(w, "W"), numpy_helper.from_array(np.array(0.02, np.float32), "s"),
             numpy_helper.from_array(np.array(0, np.int8), "z"),
             numpy_helper.from_array(np.array(0.03, np.float32), "sx")]
    # the input quantized too, as in any QDQ export (onnxruntime computes a float x by a float weight its own way)
    nodes = [helper.make_node("QuantizeLinear", ["x", "sx", "z"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "sx", "z"], ["xd"]),
             helper.make_node("QuantizeLinear", ["W", "s", "z"], ["Wq"]),
             helper.make_node("DequantizeLinear", ["Wq", "s", "z"], ["Wd"]),
             helper.make_node("MatMul", ["xd", "Wd"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], inits)
    proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", 19)])
    imported = import_onnx(proto)
    (layer,) = find_layers(imported.module, imported.sources)
    src = imported.sources[f"{layer.target}.weight"]
    assert src.name == "W" and src.transposed and not src.grid.stored_int
    untouched = {i.name: numpy_helper.to_array(i) for i in to_onnx(imported).graph.initializer}["W"]
    np.testing.assert_array_equal(untouched, w)  # the float weight itself, not its snapped copy
    with torch.no_grad():
        dict(imported.module.named_parameters())[f"{layer.target}.weight"].add_(0.05)
    out = to_onnx(imported)
    stored = {i.name: numpy_helper.to_array(i) for i in out.graph.initializer}["W"]
    assert stored.dtype == np.float32
    np.testing.assert_allclose(stored, w + 0.05, atol=1e-6)  # the float value; the graph quantizes it
    x = rng.standard_normal((3, 8)).astype(np.float32)
    got = ort.InferenceSession(out.SerializeToString()).run(None, {"x": x})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, imported.module(torch.from_numpy(x)).numpy(), atol=1e-5)


def test_runtime_view_drifts_the_dequantized_weights_under_the_importers_names(tmp_path):
    proto, x = qdq_cnn(tmp_path, True)
    assert not [t for t in find_drift_targets(proto) if t.role == "weight"]  # the integers hide the weights
    flat = dequantize_weights(proto)
    targets = {t.name for t in find_drift_targets(flat) if t.role == "weight"}
    imported = import_onnx(proto)
    assert targets == {s.name for k, s in imported.sources.items() if k.endswith(".weight")}
    assert sum(n.op_type == "DequantizeLinear" for n in flat.graph.node) == 4  # the activations' remain
    run = lambda m: ort.InferenceSession(m.SerializeToString()).run(None, {"x": x})[0]  # noqa: E731
    # onnxruntime runs the QDQ model with fused integer kernels and the float one in float: the output quantizer
    # rounds a few sums to the neighbouring step, never further
    step = float(_quantizer_params(proto)["y_scale"])
    diff = np.abs(run(flat) - run(proto))
    assert diff.max() <= step * 1.01 and (diff > 1e-6).mean() < 0.3


def test_a_qdq_model_hardens_end_to_end_and_stays_8_bit(tmp_path):
    """The runtime drifts the programmed weights (session), the objective and training noise drift the same
    tensors (drift keys), and the hardened model keeps its quantization parameters and int8 weights."""
    import ftcompile
    from ftcompile.search.drifting import onnx_drift_keys
    from ftcompile.search.harden import HardenConfig

    proto, x = qdq_cnn(tmp_path, True)
    keys = onnx_drift_keys(import_onnx(proto), targets="crossbar", bias=False)
    assert len(keys) == 2  # the conv's and the linear's quantized weights
    y = ort.InferenceSession(proto.SerializeToString()).run(None, {"x": x})[0].argmax(1)
    np.savez(tmp_path / "train.npz", x=x[:32], y=y[:32])
    np.savez(tmp_path / "val.npz", x=x[32:40], y=y[32:40])
    np.savez(tmp_path / "test.npz", x=x[40:], y=y[40:])
    onnx.save(proto, tmp_path / "m.onnx")
    r = ftcompile.harden(tmp_path / "m.onnx", tmp_path / "train.npz", tmp_path / "val.npz", test=tmp_path / "test.npz",
                         out=tmp_path / "h.onnx", validate_samples=2, plot=False,
                         config=HardenConfig(sigma=0.3, train_sigma=0.3, final_epochs=2, samples=2, blend="off"))
    assert r.after.drifting_tensors >= 2 and r.torch_before < 1.0
    hard = onnx.load(tmp_path / "h.onnx")
    before, after = _quantizer_params(proto), _quantizer_params(hard)
    assert before.keys() == after.keys() and all(np.array_equal(before[k], after[k]) for k in before)
    stored, source = _stored_weights(hard), _stored_weights(proto)
    assert stored.keys() == source.keys() and all(stored[k].dtype == source[k].dtype for k in stored)
    weights = [k for k in stored if "weight" in k]
    assert len(weights) == 2 and all(stored[k].dtype == np.int8 for k in weights)
    assert any(not np.array_equal(stored[k], source[k]) for k in weights)  # fine-tuned, on the grid


def test_asymmetric_uint8_weights_keep_their_zero_points():
    """The int8 models above are symmetric (every weight zero point is 0): here a uint8 weight per output column,
    each column with its own zero point, must import, write back and dequantize for the runtime around them."""
    rng = np.random.default_rng(0)
    q = rng.integers(0, 256, (8, 4)).astype(np.uint8)
    scale = np.array([0.02, 0.03, 0.01, 0.05], np.float32)
    zero = np.array([117, 3, 250, 128], np.uint8)
    inits = [numpy_helper.from_array(q, "Wq"), numpy_helper.from_array(scale, "s"),
             numpy_helper.from_array(zero, "z"), numpy_helper.from_array(np.array(0.03, np.float32), "sx"),
             numpy_helper.from_array(np.array(128, np.uint8), "zx")]
    # the input quantized too: onnxruntime quantizes a float input of an integer weight's MatMul its own way
    nodes = [helper.make_node("QuantizeLinear", ["x", "sx", "zx"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["xd"]),
             helper.make_node("DequantizeLinear", ["Wq", "s", "z"], ["W"], axis=1),
             helper.make_node("MatMul", ["xd", "W"], ["y"])]
    g = helper.make_graph(nodes, "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], inits)
    proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", 19)])
    want = (q.astype(np.float32) - zero) * scale
    imported = import_onnx(proto)  # parity against onnxruntime: the layer reads its weight on the uint8 grid
    assert imported.parity.ok and imported.parity.max_abs < 1e-5
    (layer,) = find_layers(imported.module, imported.sources)
    np.testing.assert_allclose(imported.module.get_submodule(layer.target).weight.detach().numpy().T, want,
                               rtol=1e-6)
    stored = {i.name: numpy_helper.to_array(i) for i in to_onnx(imported).graph.initializer}
    assert stored["Wq"].dtype == np.uint8
    np.testing.assert_array_equal(stored["Wq"], q)  # written back as the same integers
    np.testing.assert_array_equal(stored["z"], zero)
    flat = {i.name: numpy_helper.to_array(i) for i in dequantize_weights(proto).graph.initializer}
    np.testing.assert_allclose(flat["Wq"], want, rtol=1e-6)  # the runtime drifts the programmed values


def test_runtime_view_of_a_float_weight_quantized_without_zero_point_is_uint8():
    """A QuantizeLinear without zero point writes uint8 (the spec's default): negative weights clip to 0, as
    onnxruntime computes them."""
    w = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
    inits = [numpy_helper.from_array(w, "W"), numpy_helper.from_array(np.array(0.02, np.float32), "s")]
    nodes = [helper.make_node("QuantizeLinear", ["W", "s"], ["Wq"]),
             helper.make_node("DequantizeLinear", ["Wq", "s"], ["Wd"]), helper.make_node("MatMul", ["x", "Wd"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 4])], inits)
    proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", 19)])
    flat = {i.name: numpy_helper.to_array(i) for i in dequantize_weights(proto).graph.initializer}["W"]
    np.testing.assert_allclose(flat, np.clip(np.rint(w / 0.02), 0, 255) * 0.02, rtol=1e-6)
    x = np.eye(4, 8, dtype=np.float32)  # rows of the weight, read through each graph
    run = lambda m: ort.InferenceSession(m.SerializeToString()).run(None, {"x": x})[0]  # noqa: E731
    np.testing.assert_allclose(run(dequantize_weights(proto)), run(proto), atol=1e-6)
