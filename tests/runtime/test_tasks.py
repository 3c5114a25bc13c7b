"""Detection and segmentation in the runtime: label layouts, pycocotools mAP, mask overlaps, validate --task."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

import ftcompile
from ftcompile.cli import app
from ftcompile.errors import ConfigError, DataError
from ftcompile.labels import BoxLabels
from ftcompile.runtime.tasks import CocoMAP, MaskOverlap

H = W = 8
BOXES = 2


def _model(nodes, inits, inputs, outputs) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "task", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def detector(seed: int = 0) -> onnx.ModelProto:
    """torchvision's layout: one (3, H, W) image in, boxes (M, 4), scores (M,), labels (M,) out.
    Boxes are a linear function of the image (x1, y1 in [0, 4), sides in [2, 4)), so drift moves them."""
    rng = np.random.default_rng(seed)
    w_box = (0.05 * rng.standard_normal((3 * H * W, 4 * BOXES))).astype(np.float32)
    w_score = (0.05 * rng.standard_normal((3 * H * W, BOXES))).astype(np.float32)
    inits = [numpy_helper.from_array(w_box, "w_box"), numpy_helper.from_array(w_score, "w_score"),
             numpy_helper.from_array(np.array([1, 3 * H * W], np.int64), "flat"),
             numpy_helper.from_array(np.array([BOXES, 2, 2], np.int64), "pairs"),
             numpy_helper.from_array(np.array([-1, 4], np.int64), "quad"),
             numpy_helper.from_array(np.array([-1], np.int64), "vec"),
             numpy_helper.from_array(np.array([[[2.0, 2.0], [5.0, 5.0]]], np.float32), "offset"),
             numpy_helper.from_array(np.array([1.0], np.float32), "one")]
    nodes = [helper.make_node("Reshape", ["image", "flat"], ["f"]),
             helper.make_node("MatMul", ["f", "w_box"], ["raw"], name="box_head"),
             helper.make_node("Tanh", ["raw"], ["t"]),
             helper.make_node("Reshape", ["t", "pairs"], ["tp"]),  # (box, corner, xy)
             helper.make_node("Add", ["tp", "offset"], ["corners"]),  # x1,y1 in (1, 3); x2,y2 in (4, 6)
             helper.make_node("Reshape", ["corners", "quad"], ["boxes"]),
             helper.make_node("MatMul", ["f", "w_score"], ["s"], name="score_head"),
             helper.make_node("Sigmoid", ["s"], ["sv"]),
             helper.make_node("Reshape", ["sv", "vec"], ["scores"]),
             helper.make_node("Greater", ["scores", "one"], ["never"]),  # a sigmoid is < 1: every box is class 1
             helper.make_node("Cast", ["never"], ["zero"], to=TensorProto.INT64),
             helper.make_node("Add", ["zero", "one_i"], ["labels"])]
    inits.append(numpy_helper.from_array(np.array([1], np.int64), "one_i"))
    return _model(nodes, inits, [helper.make_tensor_value_info("image", TensorProto.FLOAT, [3, H, W])],
                  [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [None, 4]),
                   helper.make_tensor_value_info("scores", TensorProto.FLOAT, [None]),
                   helper.make_tensor_value_info("labels", TensorProto.INT64, [None])])


def segmenter(classes: int = 3, seed: int = 0) -> onnx.ModelProto:
    """A 3x3 convolution to per-pixel class scores (N, classes, H, W)."""
    w = np.random.default_rng(seed).standard_normal((classes, 3, 3, 3)).astype(np.float32)
    return _model([helper.make_node("Conv", ["x", "w"], ["scores"], pads=[1, 1, 1, 1], name="conv")],
                  [numpy_helper.from_array(w, "w")],
                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, H, W])],
                  [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", classes, H, W])])


def _run(model: onnx.ModelProto, feeds: dict) -> list:
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString()).run(None, feeds)


@pytest.fixture
def detection_files(tmp_path):
    """Ground truth = the detector's own clean boxes: clean mAP is exactly 1."""
    model = detector()
    path = tmp_path / "det.onnx"
    onnx.save(model, path)
    x = np.random.default_rng(1).standard_normal((12, 3, H, W)).astype(np.float32)
    boxes = np.stack([_run(model, {"image": xi})[0] for xi in x])
    data = tmp_path / "det.npz"
    np.savez(data, x=x, boxes=boxes, labels=np.ones((12, BOXES), np.int64), count=np.full(12, BOXES))
    return path, data, x, boxes


def test_detection_validate_reads_the_layout_scores_map_and_degrades_with_drift(detection_files):
    path, data, _, _ = detection_files
    clean = ftcompile.validate(path, data, sigma=0.0, samples=1)
    assert clean.metric == "map50" and clean.clean == pytest.approx(1.0) and clean.values == [pytest.approx(1.0)]
    assert ftcompile.validate(path, data, sigma=0.0, samples=1, metric="map").clean == pytest.approx(1.0)
    light = ftcompile.validate(path, data, sigma=0.1, samples=4, metric="map")
    heavy = ftcompile.validate(path, data, sigma=1.5, samples=4, metric="map")
    assert 0 <= heavy.stats.mean < light.stats.mean < 1.0
    assert heavy.stats.total_ci_low is None  # mAP is not a mean over images: no example-level interval


def _shifted(box: np.ndarray, iou: float) -> np.ndarray:
    """The box moved right so that its IoU with ``box`` is ``iou`` (same size)."""
    w = box[2] - box[0]
    dx = w * (1 - iou) / (1 + iou)
    return box + np.array([dx, 0, dx, 0])


def test_coco_map_uses_corner_boxes_and_the_iou_thresholds():
    """IoU 0.62 everywhere: AP@0.5 = 1, AP@[.5:.95] = 3 of 10 thresholds (0.5, 0.55, 0.6). A box passed as
    x1,y1,x2,y2 where COCO wants x,y,w,h would change the IoU and both numbers."""
    pred = np.array([[10.0, 10.0, 30.0, 50.0]])
    truth = BoxLabels(np.stack([_shifted(pred[0], 0.62)])[None], np.ones((1, 1), np.int64), np.array([1]))
    predictions = [(pred, np.array([0.9]), np.array([1]))]
    assert CocoMAP(0.5)(predictions, truth) == pytest.approx(1.0)
    assert CocoMAP(None)(predictions, truth) == pytest.approx(0.3)
    assert CocoMAP(0.5)([(pred[:0], np.zeros(0), np.zeros(0, np.int64))], truth) == 0.0  # nothing found
    wrong_class = [(pred, np.array([0.9]), np.array([2]))]
    assert CocoMAP(0.5)(wrong_class, truth) == 0.0


def test_mask_overlap_matches_the_closed_form_and_skips_ignored_pixels():
    truth = np.zeros((1, 10, 10), np.int64)
    truth[0, 0:4, 0:4] = 1                      # 16 pixels
    pred = np.zeros_like(truth)
    pred[0, 0:4, 2:6] = 1                       # 16 pixels, 8 shared
    assert MaskOverlap("iou")(pred, truth) == pytest.approx(8 / 24)
    assert MaskOverlap("dice")(pred, truth) == pytest.approx(2 * 8 / 32)
    ignored = truth.copy()
    ignored[0, 0:4, 4:6] = 255                  # the predicted pixels the truth lacks, and
    ignored[0, 0:4, 0:2] = 255                  # the true pixels the prediction missed, are not scored
    assert MaskOverlap("dice")(pred, ignored) == pytest.approx(1.0)
    assert MaskOverlap("dice")(np.zeros_like(truth), np.zeros_like(truth)) == 1.0  # nothing to find


def test_segmentation_validate_and_sweep(tmp_path):
    model = segmenter()
    path = tmp_path / "seg.onnx"
    onnx.save(model, path)
    x = np.random.default_rng(2).standard_normal((16, 3, H, W)).astype(np.float32)
    masks = _run(model, {"x": x})[0].argmax(1)
    np.savez(tmp_path / "seg.npz", x=x, masks=masks)
    r = ftcompile.validate(path, tmp_path / "seg.npz", sigma=0.8, samples=5)
    assert r.metric == "dice" and r.clean == pytest.approx(1.0) and r.stats.mean < 0.98
    assert r.stats.total_ci_low is not None  # per-image Dice: the example set enters the interval
    from ftcompile.data import Dataset

    in_memory = ftcompile.validate(path, Dataset({"x": x}, masks), sigma=0.8, samples=5)  # task read from the labels
    assert in_memory.metric == "dice" and in_memory.values == pytest.approx(r.values)
    curve = ftcompile.sweep([path], tmp_path / "seg.npz", sigmas=[0.0, 0.5, 1.5], samples=4,
                            metric="iou").curves["seg"]
    assert curve[0].mean == pytest.approx(1.0) and curve[2].mean < curve[1].mean < 1.0
    r = CliRunner().invoke(app, ["sweep", str(path), "--data", str(tmp_path / "seg.npz"), "--sigmas", "0,1",
                                 "--samples", "2", "--report", str(tmp_path / "s.json"), "--quiet"])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "s.json").read_text())["metric"] == "dice"  # reports name the metric they hold


def _det_arrays(x, boxes, override):
    arrays = dict(x=x, boxes=boxes, labels=np.ones(boxes.shape[:2], np.int64), count=np.full(len(x), BOXES))
    arrays.update(override)
    return {k: v for k, v in arrays.items() if v is not None}


@pytest.mark.parametrize("override, needle", [
    (dict(count=None), "missing ['count']"),
    (dict(boxes="flat"), "'boxes' must be a numeric (N, K, 4)"),
    (dict(labels="float"), "'labels' must be an integer (N, K)"),
    (dict(count="over"), "counts must be in [0, K]"),
    (dict(count="none"), "no image has a ground-truth box"),
    (dict(boxes="nan"), "NaN/inf"),
    (dict(boxes="flipped"), "x2 <= x1"),
    (dict(labels="zero"), "must be >= 1"),
    (dict(labels="short"), "'labels' must be an integer (N, K) array matching"),
])
def test_bad_detection_labels_get_one_line_errors(detection_files, tmp_path, override, needle):
    path, _, x, boxes = detection_files
    changes = {}
    for key, how in override.items():
        if how is None:
            changes[key] = None
        elif key == "boxes":
            b = boxes.copy()
            if how == "flat":
                b = b.reshape(len(b), -1)
            elif how == "nan":
                b[0, 0, 0] = np.nan
            else:
                b[0, 0, [0, 2]] = b[0, 0, [2, 0]]
            changes[key] = b
        elif key == "labels":
            changes[key] = {"float": np.ones(boxes.shape[:2]), "zero": np.zeros(boxes.shape[:2], np.int64),
                            "short": np.ones((len(x), 1), np.int64)}[how]
        else:
            changes[key] = np.full(len(x), BOXES + 1) if how == "over" else np.zeros(len(x), np.int64)
    bad = tmp_path / "bad.npz"
    np.savez(bad, **_det_arrays(x, boxes, changes))
    with pytest.raises(DataError, match=None) as err:
        ftcompile.validate(path, bad, sigma=0.1, samples=1)
    assert needle in str(err.value) and "\n" not in str(err.value)
    r = CliRunner().invoke(app, ["validate", str(path), "--data", str(bad), "--samples", "1"])
    assert r.exit_code == 2 and needle in " ".join(r.output.split()), r.output


def test_bad_masks_and_task_mismatch(tmp_path):
    path = tmp_path / "seg.onnx"
    onnx.save(segmenter(classes=3), path)
    x = np.zeros((4, 3, H, W), np.float32)
    np.savez(tmp_path / "big.npz", x=x, masks=np.full((4, H, W), 7))
    with pytest.raises(DataError, match="mask values span"):
        ftcompile.validate(path, tmp_path / "big.npz", samples=1)
    np.savez(tmp_path / "flat.npz", x=x, masks=np.zeros((4, H * W), np.int64))
    with pytest.raises(DataError, match="'masks' must be an integer"):
        ftcompile.validate(path, tmp_path / "flat.npz", samples=1)
    np.savez(tmp_path / "y.npz", x=x, y=np.zeros(4, np.int64))
    with pytest.raises(DataError, match="add an integer array 'masks'"):
        ftcompile.validate(path, tmp_path / "y.npz", samples=1, task="segmentation")
    with pytest.raises(ConfigError, match="--task 'pose' is unknown"):
        ftcompile.validate(path, tmp_path / "y.npz", samples=1, task="pose")
    with pytest.raises(ConfigError, match="does not apply to segmentation"):
        ftcompile.validate(path, tmp_path / "big.npz", samples=1, metric="map50")


def test_cli_validate_detection_gate_and_json(detection_files):
    path, data, _, _ = detection_files
    r = CliRunner().invoke(app, ["validate", str(path), "--data", str(data), "--task", "detection", "--sigma", "0.05",
                                 "--samples", "3", "--min-accuracy", "0.5", "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.output)
    assert report["metric"] == "map50" and report["verdict"] == "pass" and len(report["values"]) == 3
    r = CliRunner().invoke(app, ["validate", str(path), "--data", str(data), "--sigma", "2.0", "--samples", "3",
                                 "--min-accuracy", "0.99", "--quiet"])
    assert r.exit_code == 1, r.output


def test_harden_refuses_detection_data_with_a_one_line_error(detection_files, tmp_path):
    pytest.importorskip("torch")
    path, data, _, _ = detection_files
    r = CliRunner().invoke(app, ["harden", str(path), "--train", str(data), "--val", str(data),
                                 "--out", str(tmp_path / "h.onnx")])
    assert r.exit_code == 2 and "holds detection labels" in r.output and "package.module:factory" in r.output, r.output
    assert not (tmp_path / "h.onnx").exists()
