"""One tiny model per op family the importer learned for real architectures, from both torch exporters:
recurrent (LSTM, GRU; torchvision-free RNN classifiers), attention (Mod from the TorchScript exporter),
Split (ShuffleNet's channel split, dynamo), spatial transformers (AffineGrid + GridSample, the GTSRB
network). Each must import with parity, write fine-tuned weights back, and harden end to end."""
import io
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from typer.testing import CliRunner

from ftcompile.api import open_session
from ftcompile.cli import app
from ftcompile.export import to_onnx
from ftcompile.frontend import import_onnx


class RecurrentClassifier(nn.Module):
    def __init__(self, kind, bidirectional=False):
        super().__init__()
        self.rnn = kind(6, 8, batch_first=True, bidirectional=bidirectional)
        self.fc = nn.Linear(8 * (2 if bidirectional else 1), 3)

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.fc(y[:, -1])


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True), 1)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(self.enc(x).mean(1))


class ChannelSplit(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 8)
        self.out = nn.Linear(4, 3)

    def forward(self, x):
        a, b = self.fc(x.flatten(1)[:, :6]).chunk(2, dim=1)
        return self.out(torch.relu(a) * b)


class SpatialTransformer(nn.Module):
    """Localization network -> affine grid -> grid sample -> classifier (Arcos-Garcia et al. 2018, tiny)."""

    def __init__(self):
        super().__init__()
        self.loc = nn.Linear(3 * 8 * 8, 6)
        with torch.no_grad():  # start near the identity transform, as STNs are initialized
            self.loc.weight.mul_(0.01)
            self.loc.bias.copy_(torch.tensor([1.0, 0, 0, 0, 1.0, 0]))
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4 * 6 * 6, 3)

    def forward(self, x):
        theta = self.loc(x.flatten(1)).view(-1, 2, 3)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return self.fc(torch.relu(self.conv(F.grid_sample(x, grid, align_corners=False))).flatten(1))


CASES = {
    "lstm": (lambda: RecurrentClassifier(nn.LSTM), (2, 5, 6), "LSTM"),
    "bilstm": (lambda: RecurrentClassifier(nn.LSTM, True), (2, 5, 6), "LSTM"),
    "gru": (lambda: RecurrentClassifier(nn.GRU), (2, 5, 6), "GRU"),
    "attention": (Attention, (2, 5, 8), "Softmax"),
    "split": (ChannelSplit, (2, 6), "Gemm"),
    "stn": (SpatialTransformer, (2, 3, 8, 8), "GridSample"),
}


def export(name, exporter):
    factory, shape, _ = CASES[name]
    torch.manual_seed(0)
    model = factory().eval()
    x = torch.randn(*shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            return torch.onnx.export(model, (x,), dynamo=True, verbose=False,
                                     dynamic_shapes=({0: torch.export.Dim("N")},)).model_proto
        buf = io.BytesIO()
        torch.onnx.export(model, (x,), buf, dynamo=False, opset_version=20 if name == "stn" else 17,
                          input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "N"}, "y": {0: "N"}})
    return onnx.load_from_string(buf.getvalue())


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
@pytest.mark.parametrize("name", list(CASES))
def test_import_parity_and_write_back(name, exporter):
    proto = export(name, exporter)
    ops = {n.op_type for n in proto.graph.node}
    assert CASES[name][2] in ops
    imported = import_onnx(proto)
    assert imported.parity.ok
    x = np.random.default_rng(1).standard_normal((3, *CASES[name][1][1:])).astype(np.float32)
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():  # every parameter changes, as fine-tuning would
        for p in imported.module.parameters():
            p.mul_(1 + 0.1 * torch.randn(p.shape, generator=gen))
        want = imported.module(torch.from_numpy(x)).numpy()
    out = to_onnx(imported)
    got = ort.InferenceSession(out.SerializeToString()).run(None, {out.graph.input[0].name: x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_recurrent_weights_drift_in_the_runtime():
    session = open_session(export("lstm", "torchscript"))
    roles = {(t.op, t.slot) for t in session.targets}
    assert {("LSTM", 1), ("LSTM", 2), ("LSTM", 3)} <= roles  # W, R and B are crossbar tensors


@pytest.mark.parametrize("name,exporter", [("lstm", "torchscript"), ("stn", "dynamo"), ("attention", "torchscript")])
def test_harden_end_to_end(name, exporter, tmp_path):
    proto = export(name, exporter)
    path = tmp_path / f"{name}.onnx"
    onnx.save(proto, path)
    x = np.random.default_rng(3).standard_normal((60, *CASES[name][1][1:])).astype(np.float32)
    y = ort.InferenceSession(proto.SerializeToString()).run(None, {proto.graph.input[0].name: x})[0].argmax(1)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    r = CliRunner().invoke(app, ["harden", str(path), "--train", str(tmp_path / "d.npz"), "--val",
                                 str(tmp_path / "d.npz"), "--trials", "1", "--epochs", "1", "--final-epochs", "1",
                                 "--samples", "2", "--validate-samples", "2", "--no-plot", "--quiet",
                                 "--method", "bayesft+noise"])
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("starts,ends,steps", [([-1], [-(2**63) + 1], [-1]), ([5], [1], [-2]), ([0], [2**63 - 1], [2])])
def test_slice_backward_and_strided_matches_onnxruntime(starts, ends, steps):
    """F.pad's export reverses its pads with a step -1 Slice; option-A ResNet shortcuts use step 2."""
    from onnx import TensorProto, helper

    inits = [onnx.numpy_helper.from_array(np.array(v, np.int64), k)
             for k, v in (("s", starts), ("e", ends), ("a", [1]), ("t", steps))]
    g = helper.make_graph([helper.make_node("Slice", ["x", "s", "e", "a", "t"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "M"])], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    imported = import_onnx(model)
    assert imported.parity.ok and imported.parity.max_abs == 0
