"""Blending the fine-tuned weights with the source's (search/blend.py): the rule, and `harden` using it."""
import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

import ftcompile
from ftcompile.cli import app
from ftcompile.errors import ConfigError
from ftcompile.export import get_metadata
from ftcompile.search.blend import SEARCH, blend_state, choose_blend
from ftcompile.search.harden import HardenConfig
from ftcompile.search.objective import Score


def test_blend_state_mixes_float_tensors_the_source_has_and_leaves_the_rest():
    tuned = {"w": torch.full((2, 2), 4.0), "steps": torch.tensor(7), "new": torch.ones(3), "odd": torch.ones(2)}
    source = {"w": torch.zeros(2, 2), "steps": torch.tensor(1), "odd": torch.ones(3)}
    out = blend_state(tuned, source, 0.25)
    assert torch.equal(out["w"], torch.full((2, 2), 3.0))  # 0.25 * 0 + 0.75 * 4
    assert out["steps"] is tuned["steps"] and out["new"] is tuned["new"] and out["odd"] is tuned["odd"]


class _ByShare:
    """An objective whose K = 8 paired values depend on the module's one weight, read as the share of the
    source (w = 1 - a when the tuned weight is 1 and the source's 0); records the shares it scored."""

    def __init__(self, curve):
        self.curve, self.seen = curve, []
        self.noise = np.random.default_rng(0).normal(0, 0.01, 8)  # the same draws for every share: paired

    def __call__(self, module):
        share = round(1 - float(module.w), 6)
        self.seen.append(share)
        values = tuple(float(v) for v in self.curve(share) + self.noise)
        return Score(float(np.mean(values)), float(np.std(values) / np.sqrt(8)), values)


def _module():
    m = torch.nn.Module()
    m.w = torch.nn.Parameter(torch.tensor(1.0))
    return m


def test_choose_blend_keeps_the_simplest_share_within_one_standard_error_of_the_best():
    # within a tenth of a standard error up to 0.3 (0.2 the best), then falling off: no blend (a = 0, the
    # simplest) is kept, and the walk stops at 0.4, the first clearly worse share (0.5 is never scored)
    flat = _ByShare(lambda a: 0.80 + (3e-4 * (a == 0.2) if a <= 0.3 else -2 * (a - 0.3)))
    m = _module()
    blend, score = choose_blend(m, {"w": torch.tensor(0.0)}, flat, flat(m))
    assert blend.alpha == 0.0 and float(m.w) == 1.0
    assert flat.seen == [0.0, 0.1, 0.2, 0.3, 0.4] and [a for a, _, _ in blend.scores] == [0.0, 0.1, 0.2, 0.3, 0.4]
    assert score.mean == pytest.approx(blend.scores[0][1])
    # the fine-tune clearly best: no blend, the module left as tuned
    falling = _ByShare(lambda a: 0.80 - 0.5 * a)
    m = _module()
    blend, _ = choose_blend(m, {"w": torch.tensor(0.0)}, falling, falling(m))
    assert blend.alpha == 0.0 and float(m.w) == 1.0 and falling.seen == [0.0, 0.1]
    # a share clearly better than the fine-tune is kept, and it raises the bar: 0.2 is clearly below 0.1's score
    # (not below a = 0's), so the walk stops there
    rising = _ByShare(lambda a: {0.1: 0.85, 0.2: 0.83}.get(a, 0.80))
    m = _module()
    blend, score = choose_blend(m, {"w": torch.tensor(0.0)}, rising, rising(m))
    assert blend.alpha == pytest.approx(0.1) and rising.seen == [0.0, 0.1, 0.2] and float(m.w) == pytest.approx(0.9)
    assert score.mean == pytest.approx(blend.scores[1][1])
    # two shares both clearly above the fine-tune and within a standard error of each other: the smaller one
    close = _ByShare(lambda a: {0.1: 0.85, 0.2: 0.851}.get(a, 0.80 if a == 0 else 0.70))
    m = _module()
    blend, _ = choose_blend(m, {"w": torch.tensor(0.0)}, close, close(m))
    assert blend.alpha == pytest.approx(0.1)


def test_without_the_walk_every_share_is_scored_and_a_late_best_is_found():
    # the recipe search's blend (walk=False): a dip at 0.1 would stop the walk, but 0.7 is clearly best
    dip = _ByShare(lambda a: {0.1: 0.70, 0.7: 0.90}.get(a, 0.80))
    m = _module()
    blend, score = choose_blend(m, {"w": torch.tensor(0.0)}, dip, dip(m), SEARCH, walk=False)
    assert dip.seen == [0.0, *SEARCH] and [a for a, _, _ in blend.scores] == [0.0, *SEARCH]
    assert blend.alpha == pytest.approx(0.7) and float(m.w) == pytest.approx(0.3) and score.mean > 0.85
    walked = _ByShare(dip.curve)
    m = _module()
    assert choose_blend(m, {"w": torch.tensor(0.0)}, walked, walked(m), SEARCH)[0].alpha == 0.0
    assert walked.seen == [0.0, 0.1]  # the walk stopped at the dip


def test_a_fixed_share_is_applied_without_a_choice():
    obj = _ByShare(lambda a: 0.5 - a)
    m = _module()
    blend, score = choose_blend(m, {"w": torch.tensor(0.0)}, obj, obj(m), (0.6,), fixed=True)
    assert blend.alpha == 0.6 and float(m.w) == pytest.approx(0.4) and score.mean < 0


@pytest.mark.parametrize("value,shares", [("auto", (0.1, 0.2, 0.3, 0.4, 0.5)), ("off", ()), ("0", ()),
                                          ("0.25", (0.25,)), (1, (1.0,))])
def test_blend_setting(value, shares):
    assert HardenConfig(sigma=0.5, blend=value).blend_shares() == shares


@pytest.mark.parametrize("value", ["sometimes", "1.5", -0.1, "nan"])
def test_bad_blend_is_a_one_line_config_error(value):
    with pytest.raises(ConfigError, match="--blend must be auto, off or a number in"):
        HardenConfig(sigma=0.5, blend=value)


def test_harden_blends_the_exported_model_and_records_it(files, tmp_path):
    model, train, val = files
    base = dict(method="noise-injection", sigma=0.5, train_sigma=0.5, final_epochs=2, samples=4)
    src = {i.name: onnx.numpy_helper.to_array(i) for i in onnx.load(model).graph.initializer}
    whole = ftcompile.harden(model, train, val, out=tmp_path / "one.onnx", validate_samples=3, plot=False,
                             config=HardenConfig(**base, blend=1.0))
    # a share of 1 is the source itself: the fine-tune is undone in the exported ONNX, and the report says so
    hard = {i.name: onnx.numpy_helper.to_array(i) for i in onnx.load(tmp_path / "one.onnx").graph.initializer}
    assert all(np.allclose(hard[k], src[k], atol=1e-6) for k in src)
    assert whole.blend["share"] == 1.0 and [s[0] for s in whole.blend["scores"]] == [0.0, 1.0]
    assert get_metadata(onnx.load(tmp_path / "one.onnx"))["blend"]["share"] == 1.0
    off = ftcompile.harden(model, train, val, out=tmp_path / "off.onnx", validate_samples=3, plot=False,
                           config=HardenConfig(**base, blend="off"))
    assert off.blend is None
    tuned = {i.name: onnx.numpy_helper.to_array(i) for i in onnx.load(tmp_path / "off.onnx").graph.initializer}
    assert all(np.abs(tuned[k] - src[k]).max() > 0 for k in src)
    ftna = ftcompile.harden(model, train, val, out=tmp_path / "ftna.onnx", validate_samples=3, plot=False,
                            config=HardenConfig(**{**base, "method": "ftna"}, code_bits=8))
    assert ftna.blend is None  # its code head starts from random weights: nothing to blend it with


def test_cli_blend(files, tmp_path):
    model, train, val = files
    args = ["harden", str(model), "--train", str(train), "--val", str(val), "--method", "noise-injection",
            "--train-sigma", "0.5", "--final-epochs", "1", "--samples", "3", "--validate-samples", "2", "--no-plot",
            "--out", str(tmp_path / "h.onnx")]
    r = CliRunner().invoke(app, args + ["--blend", "0.5"])
    assert r.exit_code == 0 and "source weights blended in: 0.5 (tried 0, 0.5)" in r.output, r.output
    bad = CliRunner().invoke(app, args + ["--blend", "lots"])
    assert bad.exit_code == 2 and "--blend must be auto, off or a number in [0, 1]" in bad.output
    assert "Traceback" not in bad.output
