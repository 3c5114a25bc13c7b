"""The baselines' own pieces: FTNA's code head and decoder, AWP's bounded perturbation, and both end to end."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

import ftcompile
from ftcompile.export import get_metadata
from ftcompile.passes.ecoc import EcocHead, decode_scores, ecoc_onnx, hadamard_codes, min_distance
from ftcompile.search.harden import HardenConfig
from ftcompile.search.trainer import awp_perturbation


@pytest.mark.parametrize("classes,bits", [(2, 4), (10, 16), (10, 8), (100, 16)])
def test_hadamard_codes_are_distinct_with_half_length_distance(classes, bits):
    codes = hadamard_codes(classes, bits)
    assert codes.shape[0] == classes and codes.shape[1] >= max(bits, classes + 1)
    assert min_distance(codes) == codes.shape[1] // 2


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_decoder_recovers_the_class_under_fewer_flips_than_half_the_distance(data):
    codes = hadamard_codes(10, 16)
    d = min_distance(codes)
    c = data.draw(st.integers(0, 9))
    flips = data.draw(st.sets(st.integers(0, codes.shape[1] - 1), max_size=(d - 1) // 2))
    word = codes[c].copy()
    word[list(flips)] ^= 1
    logits = torch.tensor(np.where(word == 1, 1.0, -1.0), dtype=torch.float32)[None]
    assert int(decode_scores(logits, torch.from_numpy(codes)).argmax()) == c


def test_onnx_decoder_equals_the_torch_decoder():
    codes = hadamard_codes(10, 16)
    for opset in (11, 17):
        graph = helper.make_graph([helper.make_node("Identity", ["z"], ["scores"])], "g",
                                  [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 16])],
                                  [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 10])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        model.ir_version = 7
        head = EcocHead("none", codes, model=torch.nn.Module())
        head.model.body = torch.nn.Identity()
        decoded = ecoc_onnx(model, head, {}, "scores")
        onnx.checker.check_model(decoded)
        z = np.random.default_rng(opset).standard_normal((64, 16)).astype(np.float32)
        out = ort.InferenceSession(decoded.SerializeToString()).run(None, {"z": z})[0]
        np.testing.assert_array_equal(out, decode_scores(torch.from_numpy(z), torch.from_numpy(codes)).numpy())


def test_awp_perturbation_respects_its_bound_and_climbs_the_loss():
    torch.manual_seed(0)
    layer = torch.nn.Linear(8, 3)
    x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
    loss = F.cross_entropy(layer(x), y)
    weights = {"weight": layer.weight}
    grads = dict(zip(weights, torch.autograd.grad(loss, list(weights.values()))))
    for gamma in (0.001, 0.05, 0.5):
        v = awp_perturbation(weights, grads, gamma)
        assert torch.isclose(v["weight"].norm(), gamma * layer.weight.norm(), rtol=1e-5)
    v = awp_perturbation(weights, grads, 0.01)
    with torch.no_grad():
        climbed = F.cross_entropy(F.linear(x, layer.weight + v["weight"], layer.bias), y)
    assert climbed > loss  # along the gradient: the worst case in the ball, to first order


def test_ftna_and_awp_end_to_end(files, tmp_path):
    model, train, val = files
    r = ftcompile.harden(model, train, val, out=tmp_path / "f.onnx", plot=False, validate_samples=4,
                         config=HardenConfig(method="ftna", final_epochs=60, samples=3, code_bits=8, lr=3e-3))
    exported = onnx.load(tmp_path / "f.onnx")
    assert any(n.op_type == "ReduceSum" for n in exported.graph.node)
    assert np.array(get_metadata(exported)["ecoc_codes"]).shape == (4, 8)
    assert r.after.clean > 0.6  # 4 classes: the code head learned (chance is 0.25)
    # the decoder is digital: the runtime drifts only the two layers' weights and biases
    assert ftcompile.api.open_session(tmp_path / "f.onnx").weights.keys() == {"fc0.weight", "fc0.bias",
                                                                              "fc1.weight", "fc1.bias"}
    weights = {}
    for gamma in (0.1, 0.0):  # the same run but for the perturbation: gamma must reach the training loop
        a = ftcompile.harden(model, train, val, out=tmp_path / f"a{gamma}.onnx", plot=False, validate_samples=4,
                             config=HardenConfig(method="awp", final_epochs=2, samples=3, awp_gamma=gamma))
        assert a.trials == [] and a.after.clean > 0.5
        weights[gamma] = onnx.numpy_helper.to_array(onnx.load(tmp_path / f"a{gamma}.onnx").graph.initializer[0])
    assert np.abs(weights[0.1] - weights[0.0]).max() > 1e-4
