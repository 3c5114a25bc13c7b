"""harden on a segmenter: per-pixel loss in training, the runtime's Dice in the search and the sign-off."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

pytest.importorskip("torch")

import ftcompile  # noqa: E402
from ftcompile.cli import app  # noqa: E402
from ftcompile.errors import ConfigError  # noqa: E402
from ftcompile.search.harden import HardenConfig  # noqa: E402

H = W = 8


def segmenter(classes: int = 3, hidden: int = 8, seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    w1 = (rng.standard_normal((hidden, 3, 3, 3)) / np.sqrt(27)).astype(np.float32)
    w2 = (rng.standard_normal((classes, hidden, 3, 3)) / np.sqrt(9 * hidden)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["h"], pads=[1, 1, 1, 1], name="conv1"),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Conv", ["r", "w2"], ["scores"], pads=[1, 1, 1, 1], name="conv2")]
    graph = helper.make_graph(nodes, "seg", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, H, W])],
                              [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", classes, H, W])],
                              [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="tests")
    model.ir_version = 8
    return model


@pytest.fixture
def seg_files(tmp_path):
    import onnxruntime as ort

    teacher = segmenter(seed=1)
    x = np.random.default_rng(3).standard_normal((96, 3, H, W)).astype(np.float32)
    masks = ort.InferenceSession(teacher.SerializeToString()).run(None, {"x": x})[0].argmax(1)
    masks[:, 0, 0] = 255  # an ignored pixel in every mask
    student = tmp_path / "seg.onnx"
    onnx.save(segmenter(seed=2), student)  # another net: fine-tuning has something to learn
    np.savez(tmp_path / "train.npz", x=x[:64], masks=masks[:64])
    np.savez(tmp_path / "val.npz", x=x[64:], masks=masks[64:])
    return student, tmp_path / "train.npz", tmp_path / "val.npz"


@pytest.mark.parametrize("method", ["noise-injection", "bayesft"])
def test_harden_a_segmenter_trains_on_pixels_and_signs_off_on_dice(seg_files, tmp_path, method):
    model, train, val = seg_files
    cfg = HardenConfig(sigma=0.3, method=method, trials=2, epochs=1, final_epochs=8, samples=3, lr=1e-2)
    r = ftcompile.harden(model, train, val, out=tmp_path / f"{method}.onnx", config=cfg, validate_samples=4, plot=False)
    assert r.before.metric == r.after.metric == "dice"
    assert r.after.clean > r.before.clean + 0.1  # training on the teacher's masks moved the student toward them
    assert r.after.stats.total_ci_low is not None
    if method == "bayesft":
        assert len(r.trials) == 2 and all(0 <= t.objective <= 1 for t in r.trials)


def test_harden_refuses_what_a_segmenter_cannot_do(seg_files, tmp_path):
    model, train, val = seg_files
    with pytest.raises(ConfigError, match="are for classifiers"):
        ftcompile.harden(model, train, val, out=tmp_path / "f.onnx", config=HardenConfig(method="ftna"), plot=False)
    r = CliRunner().invoke(app, ["harden", str(model), "--train", str(train), "--val", str(val), "--objective", "loss",
                                 "--out", str(tmp_path / "l.onnx")])
    assert r.exit_code == 2 and "searched on its Dice" in r.output and not (tmp_path / "l.onnx").exists()


@pytest.mark.parametrize("classes", [1, 3])
def test_segmentation_loss_ignores_marked_pixels_and_rewards_the_foreground(classes):
    import torch

    from ftcompile.search.trainer import segmentation_loss

    gen = torch.Generator().manual_seed(0)
    masks = (torch.rand(4, 8, 8, generator=gen) < 0.2).long()
    if classes == 3:  # both foreground classes present
        masks = masks * torch.randint(1, 3, masks.shape, generator=gen)
    masks[:, 0] = 255
    logits = torch.randn(4, classes, 8, 8, generator=gen)
    moved = logits.clone()
    moved[:, :, 0] += 5.0  # only the ignored row changes
    assert torch.allclose(segmentation_loss(logits, masks), segmentation_loss(moved, masks))
    target = torch.where(masks == 255, 0, masks)
    if classes == 1:
        right = 20.0 * (2 * target.unsqueeze(1).float() - 1)
        background = torch.full_like(right, -20.0)
    else:
        right = 20.0 * torch.nn.functional.one_hot(target, classes).movedim(-1, 1).float()
        background = 20.0 * torch.nn.functional.one_hot(torch.zeros_like(target), classes).movedim(-1, 1).float()
    assert segmentation_loss(right, masks) < 1e-3
    # all-background: on top of the per-pixel cross-entropy, the Dice term adds about 1 (nothing found)
    keep = masks != 255
    if classes == 1:
        ce = torch.nn.functional.binary_cross_entropy_with_logits(background[:, 0][keep], target[keep].float())
    else:
        ce = torch.nn.functional.cross_entropy(background, masks, ignore_index=255)
    assert segmentation_loss(background, masks) - ce > 0.9


def test_sigma_auto_finds_a_segmenter_s_half_dice_sigma(seg_files, tmp_path):
    _, train, val = seg_files
    model = tmp_path / "teacher.onnx"
    onnx.save(segmenter(seed=1), model)  # the masks' own teacher: clean Dice 1, which drift halves
    cfg = HardenConfig(sigma="auto", train_sigma=0.3, epochs=1, final_epochs=1, samples=2, blend="off")
    r = ftcompile.harden(model, train, val, out=tmp_path / "a.onnx", config=cfg, validate_samples=2, plot=False)
    auto = r.sigma_auto
    assert auto["sigma"] > 0 and r.after.drift == f"lognormal:{auto['sigma']:g}"
    below = [m for s, m in auto["points"] if s >= auto["sigma"]]
    above = [m for s, m in auto["points"] if 0 < s < auto["sigma"]]
    assert min(below) <= auto["clean"] / 2 < max(above)  # the Dice crosses half of the clean Dice there
