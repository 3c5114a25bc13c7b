"""Data the way users hold it: an .npz, a folder of images (one subfolder per class) or a Python factory, for every
command."""
from __future__ import annotations

import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from ftcompile.cli import app
from ftcompile.data import InputSpec, as_dataset
from ftcompile.data.factory import is_factory
from ftcompile.data.image_folder import ImageFolder, ImagePrep
from ftcompile.errors import ConfigError, DataError

PIL = pytest.importorskip("PIL.Image")


def conv_model(channels: int = 3, size: int = 8, classes: int = 2) -> onnx.ModelProto:
    """Mean over each channel -> Gemm: class 0 is dark, class 1 bright (on the first channel)."""
    w = np.zeros((classes, channels), np.float32)
    w[1, 0], w[0, 0] = 10.0, -10.0
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["p"]), helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "w", "b"], ["logits"], transB=1)]
    graph = helper.make_graph(nodes, "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", channels, size, size])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
                              [numpy_helper.from_array(w, "w"),
                               numpy_helper.from_array(np.array([5.0, -5.0], np.float32), "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def write_folder(root, n=6, size=12):
    """``root/dark/*.png`` (values 0-40) and ``root/light/*.png`` (200-255), 12 x 12 RGB, so a resize is needed."""
    rng = np.random.default_rng(0)
    for name, lo, hi in (("dark", 0, 40), ("light", 200, 255)):
        (root / name).mkdir(parents=True)
        for i in range(n):
            PIL.fromarray(rng.integers(lo, hi, (size, size, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    (root / "light" / "notes.txt").write_text("not an image")  # ignored by suffix
    return root


def test_an_image_folder_is_read_resized_scaled_and_labelled_by_subfolder(tmp_path):
    folder = write_folder(tmp_path / "imgs")
    spec = [InputSpec("x", ("N", 3, 8, 8), np.dtype(np.float32))]
    d = as_dataset(folder, spec)
    x = d.inputs["x"]
    assert x.shape == (12, 3, 8, 8) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert d.labels.tolist() == [0] * 6 + [1] * 6  # dark = 0, light = 1 (sorted subfolder names)
    assert x[:6].max() < 40 / 255 + 1e-6 and x[6:].min() > 200 / 255 - 1e-6
    norm = as_dataset(ImageFolder(folder, ImagePrep((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))), spec)
    np.testing.assert_allclose(norm.inputs["x"], (x - 0.5) / 0.25, rtol=1e-6)
    gray = as_dataset(folder, [InputSpec("x", ("N", 1, 4, 4), np.dtype(np.float32))])
    assert gray.inputs["x"].shape == (12, 1, 4, 4)
    last = as_dataset(folder, [InputSpec("x", ("N", 8, 8, 3), np.dtype(np.float32))])
    assert last.inputs["x"].shape == (12, 8, 8, 3)  # channels-last models get channels last
    assert d.record("data").source == str(folder) and len(d.record("data").sha256) == 64


def test_image_folder_errors(tmp_path):
    spec = [InputSpec("x", ("N", 3, 8, 8), np.dtype(np.float32))]
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match="no images in class subfolders"):
        as_dataset(tmp_path / "empty", spec)
    bad = write_folder(tmp_path / "bad")
    (bad / "dark" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="broken.png: not a readable image"):
        as_dataset(bad, spec)
    with pytest.raises(ConfigError, match="go together"):
        ImagePrep.parse("0.5,0.5,0.5", None)
    with pytest.raises(ConfigError, match="must be numbers"):
        ImagePrep.parse("a,b", "1,1")
    with pytest.raises(ConfigError, match="the model takes 3 channels"):
        as_dataset(ImageFolder(write_folder(tmp_path / "c"), ImagePrep((0.5,), (0.5,))), spec)


def _factories(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.uniform(0, 0.1, (5, 3, 8, 8)), rng.uniform(0.9, 1, (5, 3, 8, 8))]).astype(np.float32)
    y = np.array([0] * 5 + [1] * 5)
    np.save(tmp_path / "x.npy", x), np.save(tmp_path / "y.npy", y)
    (tmp_path / "userdata.py").write_text(
        "import numpy as np, torch\n"
        f"X, Y = np.load(r'{tmp_path}/x.npy'), np.load(r'{tmp_path}/y.npy')\n"
        "def arrays():\n    return {'x': X, 'y': Y}\n"
        "def pair():\n    return X, Y\n"
        "class DS(torch.utils.data.Dataset):\n"
        "    def __len__(self):\n        return len(X)\n"
        "    def __getitem__(self, i):\n        return torch.from_numpy(X[i]), int(Y[i])\n"
        "def dataset():\n    return DS()\n"
        "def nothing():\n    return 42\n"
        "def broken():\n    raise OSError('disk gone')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return x, y


def test_a_python_factory_gives_arrays_a_pair_or_a_torch_dataset(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    x, y = _factories(tmp_path, monkeypatch)
    spec = [InputSpec("x", ("N", 3, 8, 8), np.dtype(np.float32))]
    for name in ("arrays", "pair", "dataset"):
        d = as_dataset(f"userdata:{name}", spec)
        np.testing.assert_array_equal(d.inputs["x"], x)
        assert d.labels.tolist() == y.tolist() and d.source == f"userdata:{name}"
    assert is_factory("pkg.mod:fn") and not is_factory("model.onnx") and not is_factory(str(tmp_path / "x.npy"))
    with pytest.raises(DataError, match="returned int"):
        as_dataset("userdata:nothing", spec)
    with pytest.raises(DataError, match="failed \\(OSError: disk gone\\)"):
        as_dataset("userdata:broken", spec)
    with pytest.raises(DataError, match="cannot load data factory nosuch:thing"):
        as_dataset("nosuch:thing", spec)
    sys.modules.pop("userdata", None)


def test_every_command_takes_a_folder_and_a_factory(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    _factories(tmp_path, monkeypatch)
    folder = write_folder(tmp_path / "imgs")
    model = tmp_path / "m.onnx"
    onnx.save(conv_model(), model)
    run = CliRunner().invoke
    for data in (str(folder), "userdata:arrays"):
        r = run(app, ["validate", str(model), "--data", data, "--sigma", "0.1", "--samples", "2", "--json"])
        assert r.exit_code == 0, r.output
        assert '"clean": 1.0' in r.stdout
        assert run(app, ["sweep", str(model), "--data", data, "--sigmas", "0,0.2", "--samples", "2"]).exit_code == 0
        assert run(app, ["analyze", str(model), "--data", data, "--samples", "2"]).exit_code == 0
    norm = run(app, ["validate", str(model), "--data", str(folder), "--image-mean", "0.5,0.5,0.5", "--image-std",
                     "0.5,0.5,0.5", "--sigma", "0.1", "--samples", "2", "--json"])
    assert norm.exit_code == 0 and '"clean": 1.0' in norm.stdout, norm.output
    h = run(app, ["harden", str(model), "--train", "userdata:arrays", "--val", str(folder), "--test", "userdata:pair",
                  "--final-epochs", "1", "--samples", "2", "--validate-samples", "2", "--no-plot", "--out",
                  str(tmp_path / "h.onnx")])
    assert h.exit_code == 2 and "is the same data as the training data" in h.output  # the same arrays
    h = run(app, ["harden", str(model), "--train", "userdata:arrays", "--val", str(folder), "--final-epochs", "1",
                  "--samples", "2", "--validate-samples", "2", "--no-plot", "--out", str(tmp_path / "h.onnx")])
    assert h.exit_code == 0, h.output
    sys.modules.pop("userdata", None)
