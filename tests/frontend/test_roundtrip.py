"""import -> insert_dropout (rates 0) -> export -> onnxruntime parity, for five nets and both torch exporters."""
import io

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from ftcompile.errors import ModelError, UnsupportedModelError
from ftcompile.export import get_metadata, save_onnx, to_onnx
from ftcompile.frontend import import_onnx, import_torch
from ftcompile.passes import find_layers, insert_dropout
from tests.helpers import teacher_mlp


class Residual(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x):
        return torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


def small_resnet():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), Residual(8),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))


def vgg():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1),
                         nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 4 * 4, 32), nn.ReLU(),
                         nn.Dropout(0.5), nn.Linear(32, 10))


def alexnet():
    return nn.Sequential(nn.Conv2d(3, 8, 5, stride=2, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
                         nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
                         nn.Linear(16, 24), nn.ReLU(), nn.Linear(24, 10), nn.LogSoftmax(dim=1))


def lenet():
    return nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.Tanh(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.GELU(), nn.Linear(120, 10))


def mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.LeakyReLU(0.1), nn.Linear(32, 32), nn.Sigmoid(),
                         nn.LayerNorm(32), nn.Linear(32, 4))


NETS = {"mlp": (mlp, (1, 16)), "lenet": (lenet, (1, 1, 28, 28)), "resnet": (small_resnet, (1, 3, 16, 16)),
        "vgg": (vgg, (1, 3, 16, 16)), "alexnet": (alexnet, (1, 3, 16, 16))}
EXPECTED_LAYERS = {"mlp": 2, "lenet": 3, "resnet": 3, "vgg": 3, "alexnet": 3}


def export(net, shape, exporter):
    torch.manual_seed(0)
    model = net().eval()
    if any(isinstance(m, nn.BatchNorm2d) for m in model.modules()):  # non-trivial running stats
        model.train()
        with torch.no_grad():
            model(torch.randn(8, *shape[1:]))
        model.eval()
    x = torch.randn(*shape)
    if exporter == "dynamo":
        return torch.onnx.export(model, (x,), dynamo=True, dynamic_shapes=({0: torch.export.Dim("N")},)).model_proto
    buf = io.BytesIO()
    torch.onnx.export(model, (x,), buf, dynamo=False, opset_version=13, input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "N"}, "y": {0: "N"}})
    return onnx.load_from_string(buf.getvalue())


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
@pytest.mark.parametrize("name", list(NETS))
def test_roundtrip_parity(name, exporter):
    net, shape = NETS[name]
    proto = export(net, shape, exporter)
    imported = import_onnx(proto)
    assert imported.parity.ok
    layers = find_layers(imported.module, imported.sources)
    assert sum(not layer.is_output for layer in layers) == EXPECTED_LAYERS[name]
    assert [layer.is_output for layer in layers][-1]
    sites = insert_dropout(imported.module)
    assert len(sites) == EXPECTED_LAYERS[name]
    x = np.random.default_rng(1).standard_normal((5, *shape[1:])).astype(np.float32)  # another batch size
    name_in = proto.graph.input[0].name
    source = ort.InferenceSession(proto.SerializeToString()).run(None, {name_in: x})[0]
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():  # "fine-tune": every parameter changes, each differently
        for p in imported.module.parameters():
            p.mul_(1 + 0.2 * torch.randn(p.shape, generator=gen))
        want = imported.module.eval()(torch.from_numpy(x)).numpy()
    out = to_onnx(imported, sites=sites, metadata={"rates": sites.rates})
    got = ort.InferenceSession(out.SerializeToString()).run(None, {name_in: x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)  # the new weights, every one of them
    assert np.abs(got - source).max() > 1e-2  # and not the source's
    assert sum(n.op_type == "Dropout" for n in out.graph.node) >= len(sites)
    assert get_metadata(out)["rates"] == [0.0] * len(sites)


def test_rates_zero_are_identity_and_rates_train_only():
    imported = import_torch(mlp(), torch.zeros(1, 16))
    x = torch.randn(64, 16)
    before = imported.module(x)
    sites = insert_dropout(imported.module)
    sites.set_rates([0.5, 0.5])
    imported.module.eval()
    assert torch.equal(imported.module(x), before)
    imported.module.train()
    assert not torch.allclose(imported.module(x), before)


def test_finetuned_weights_are_written_back():
    imported = import_onnx(teacher_mlp())
    with torch.no_grad():
        for p in imported.module.parameters():
            p.mul_(1.5)
    out = to_onnx(imported)
    w = {i.name: onnx.numpy_helper.to_array(i) for i in out.graph.initializer}
    src = {i.name: onnx.numpy_helper.to_array(i) for i in teacher_mlp().graph.initializer}
    np.testing.assert_allclose(w["fc0.weight"], 1.5 * src["fc0.weight"], rtol=1e-6)


def test_onnx_helper_model_and_matmul_add_fusion():
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((8, 6)).astype(np.float32), "W"),
             numpy_helper.from_array(rng.standard_normal(6).astype(np.float32), "b"),
             numpy_helper.from_array(np.array([0, -1], np.int64), "shape")]
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["flat"]), helper.make_node("MatMul", ["flat", "W"], ["m"]),
             helper.make_node("Add", ["m", "b"], ["a"]), helper.make_node("Softmax", ["a"], ["y"], axis=1)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 6])], inits)
    for opset in (11, 17):
        imported = import_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)]))
        (layer,) = find_layers(imported.module)
        assert layer.kind == "Linear" and imported.module.get_submodule(layer.target).bias is not None


def test_pt2_program(tmp_path):
    program = torch.export.export(lenet().eval(), (torch.randn(2, 1, 28, 28),))
    path = tmp_path / "lenet.pt2"
    torch.export.save(program, path)
    from ftcompile.frontend import load_model
    assert load_model(path).parity.ok


def test_import_errors(tmp_path):
    from onnx import TensorProto, helper
    g = helper.make_graph([helper.make_node("Bernoulli", ["x"], ["y"], name="coin0")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])])
    with pytest.raises(UnsupportedModelError, match=r"coin0 \(Bernoulli\).*random numbers"):
        import_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    g = helper.make_graph([helper.make_node("Normalizer", ["x"], ["y"], name="n0", domain="ai.onnx.ml")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)])
    with pytest.raises(UnsupportedModelError, match="custom-domain.*ai.onnx.ml.Normalizer"):
        import_onnx(m)
    bad = tmp_path / "bad.pt2"
    bad.write_bytes(b"nope")
    from ftcompile.frontend import load_model
    with pytest.raises(ModelError, match="torch.export"):
        load_model(bad)
    src = tmp_path / "m.onnx"
    onnx.save(teacher_mlp(), src)
    from ftcompile.errors import OutputError
    with pytest.raises(OutputError, match="input model"):
        save_onnx(teacher_mlp(), src, source=src)


def test_graph_constants_stay_out_of_the_state_dict():
    """An attention-mask fill of -inf is a constant of the graph, not state: mixing state dicts (the blend's lerp,
    0 * -inf) must not reach it."""
    from onnx import TensorProto, helper, numpy_helper

    from ftcompile.search.blend import blend_state
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 3)).astype(np.float32)
    w[:, 0] = np.abs(w[:, 0])  # with positive inputs every row keeps one unmasked score
    inits = [numpy_helper.from_array(w, "W"),
             numpy_helper.from_array(np.array(-np.inf, np.float32), "fill"),
             numpy_helper.from_array(np.array(0.0, np.float32), "zero")]
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Less", ["h", "zero"], ["neg"]),
             helper.make_node("Where", ["neg", "fill", "h"], ["masked"]),
             helper.make_node("Softmax", ["masked"], ["y"], axis=-1)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], inits)
    imported = import_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    assert set(imported.module.state_dict()) == set(imported.sources)
    state = imported.module.state_dict()
    imported.module.load_state_dict(blend_state(state, state, 0.0))
    x = torch.from_numpy(np.abs(rng.standard_normal((5, 4))).astype(np.float32))
    assert not torch.isnan(imported.module(x)).any()
