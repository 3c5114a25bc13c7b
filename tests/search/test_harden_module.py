"""harden from an nn.Module factory (detectors): sites on the module, the detector's own losses in training,
mAP in the search, export through torch's exporter and the runtime's sign-off on that ONNX."""
from __future__ import annotations

import json
import re

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

torch = pytest.importorskip("torch")

import ftcompile  # noqa: E402
from ftcompile.cli import app  # noqa: E402
from ftcompile.errors import ConfigError, ModelError  # noqa: E402
from ftcompile.passes.module_dropout import insert_module_dropout  # noqa: E402
from ftcompile.search.harden import HardenConfig  # noqa: E402
from tests.search.detectors import boxes_data, tiny  # noqa: E402

FACTORY = "tests.search.detectors:tiny"


@pytest.fixture
def box_files(tmp_path):
    np.savez(tmp_path / "train.npz", **boxes_data(48, 0))
    np.savez(tmp_path / "val.npz", **boxes_data(16, 1))
    return tmp_path / "train.npz", tmp_path / "val.npz"


def test_module_sites_follow_activations_skip_outputs_and_keep_the_state_dict():
    model = tiny()
    keys = set(model.state_dict())
    sites = insert_module_dropout(model)
    assert set(model.state_dict()) == keys  # the model's own weight files still load
    assert not set(sites.layers) & set(model.output_layers)
    assert len(sites) == sum(isinstance(m, torch.nn.Conv2d) for m in model.modules()) - len(model.output_layers)
    # stem.0 is Conv -> BatchNorm -> ReLU: the site acts on the ReLU's output (never negative after dropout)
    seen = {}
    # the site is a node of the traced stem's graph: seen as the input of the next convolution
    model.get_submodule("stem.1.0").register_forward_hook(lambda m, i, o: seen.setdefault("relu", i[0]))
    model.train()
    sites.set_rates([0.5] * len(sites))
    x = torch.randn(8, 3, 32, 32)
    model.features(x)
    dropped = (seen["relu"] == 0).float().mean().item()
    conv, bn = model.get_submodule("stem.0.0"), model.get_submodule("stem.0.1")
    clean = (torch.relu(bn(conv(x))) == 0).float().mean().item()
    assert dropped > clean + 0.2  # about half of the non-zero activations were dropped
    model.eval()
    first = model.features(x)
    assert torch.equal(first, model.features(x))  # eval: the sites are identities


class _Block(torch.nn.Module):  # torchvision's BasicBlock style: modules outside a Sequential, functional ReLU
    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.BatchNorm2d(8)
        self.conv2, self.bn2 = torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.BatchNorm2d(8)

    def forward(self, x):
        return torch.nn.functional.relu(x + self.bn2(self.conv2(torch.nn.functional.relu(self.bn1(self.conv1(x))))))


class _Moody(torch.nn.Module):  # a Python branch on the mode: a trace would freeze one side
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(8, 8, 1)

    def forward(self, x):
        return self.conv(x) if self.training else 2 * self.conv(x)


class _Spare(torch.nn.Module):  # registers a layer its forward never calls: a trace would drop it
    def __init__(self):
        super().__init__()
        self.conv, self.unused = torch.nn.Conv2d(8, 8, 1), torch.nn.Conv2d(8, 8, 1)

    def forward(self, x):
        return torch.relu(self.conv(x))


class _Net(torch.nn.Module):
    output_layers = ["head"]

    def __init__(self):
        super().__init__()
        self.stem, self.block, self.moody = torch.nn.Conv2d(3, 8, 3, padding=1), _Block(), _Moody()
        self.spare, self.head = _Spare(), torch.nn.Conv2d(8, 2, 1)

    def forward(self, x):
        return self.head(self.spare(self.moody(self.block(torch.relu(self.stem(x))))))


def test_module_sites_are_graph_nodes_where_a_child_traces_faithfully_and_hooks_elsewhere():
    import copy

    from torch import fx

    net = _Net().eval()
    original, keys, x = copy.deepcopy(net), set(net.state_dict()), torch.randn(2, 3, 16, 16)
    sites = insert_module_dropout(net)
    assert sites.layers == ["stem", "block.conv1", "block.conv2", "moody.conv", "spare.conv", "spare.unused"]
    assert isinstance(net.block, fx.GraphModule)  # traced: same graph in both modes, same state_dict
    assert not isinstance(net.moody, fx.GraphModule) and not isinstance(net.spare, fx.GraphModule)
    assert sites.names[1:3] == ["block.ftcompile_dropout_1", "block.ftcompile_dropout_2"]
    assert [n for n in sites.names if "." not in n] == ["ftcompile_dropout_0", "ftcompile_dropout_3",
                                                          "ftcompile_dropout_4", "ftcompile_dropout_5"]  # hooks
    node = {n.target: n for n in net.block.graph.nodes if n.op == "call_module"}
    site_arg = node["ftcompile_dropout_1"].args[0]
    assert site_arg.op == "call_function" and "relu" in str(site_arg.target)  # after BN and the functional ReLU
    assert node["ftcompile_dropout_2"].args[0].target == "conv2"  # BN then an add, no activation: after the layer
    assert set(net.state_dict()) == keys and torch.equal(net(x), original(x))  # eval: identities
    net.train()
    zeros = []
    net.block.conv2.register_forward_hook(lambda m, i, o: zeros.append((i[0] == 0).float().mean().item()))
    net(x)
    sites.set_rates([0.0, 0.9, 0.0, 0.0, 0.0, 0.0])
    net(x)
    assert zeros[0] < 0.7 and zeros[1] > 0.85  # ReLU zeros about half; the site at 0.9 zeros the rest too


def test_harden_a_detector_from_its_factory_learns_and_signs_off_on_map(box_files, tmp_path):
    train, val = box_files
    test = tmp_path / "test.npz"
    np.savez(test, **boxes_data(16, 2))
    out = tmp_path / "det.onnx"
    cfg = HardenConfig(sigma=0.05, method="noise-injection", final_epochs=25, samples=2, lr=5e-3, batch_size=16)
    r = ftcompile.harden(FACTORY, train, val, test=test, out=out, config=cfg, validate_samples=3, plot=False)
    assert r.before.metric == r.after.metric == "map50"
    assert r.after.clean > r.before.clean + 0.3  # the untrained detector finds nothing; the fine-tuned one does
    exported = onnx.load(out)
    assert [o.name for o in exported.graph.output] == ["boxes", "scores", "labels"]
    meta = {p.key: p.value for p in exported.metadata_props}
    assert meta["ftcompile.method"] == "noise-injection" and meta["ftcompile.verdict"] == r.verdict
    source = tmp_path / "det.source.onnx"
    assert source.exists() and r.before.model == str(source)
    again = ftcompile.validate(out, test, sigma=0.05, samples=3, task="detection")
    assert again.stats.mean == pytest.approx(r.after.stats.mean)  # the written model is the signed-off one


def test_bayesft_searches_the_module_sites_on_map(box_files, tmp_path):
    train, val = box_files
    cfg = HardenConfig(sigma=0.2, method="bayesft", trials=2, epochs=2, final_epochs=1, samples=2, lr=5e-3)
    given = tiny()
    state = {k: v.clone() for k, v in given.state_dict().items()}
    r = ftcompile.harden(given, train, val, out=tmp_path / "b.onnx", config=cfg, validate_samples=2, plot=False)
    assert all(torch.equal(v, given.state_dict()[k]) for k, v in state.items())  # the caller's module is untouched
    assert not given._forward_hooks and not any(m._forward_hooks for m in given.modules())
    assert len(r.trials) == 2 and all(0 <= t.objective <= 1 for t in r.trials)
    assert len(r.rates) == len(r.sites) and any(rate > 0 for rate in r.rates)
    rates = json.loads({p.key: p.value
                        for p in onnx.load(tmp_path / "b.onnx").metadata_props}["ftcompile.dropout_rates"])
    assert list(rates) == r.sites


def test_harden_cli_takes_a_factory(box_files, tmp_path):
    train, val = box_files
    out = tmp_path / "cli.onnx"
    r = CliRunner().invoke(app, ["harden", FACTORY, "--train", str(train), "--val", str(val), "--sigma", "0.1",
                                 "--final-epochs", "2", "--samples", "2", "--validate-samples", "2", "--no-plot",
                                 "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["config"]["method"] == "noise-injection" and report["after"]["metric"] == "map50" and out.exists()


@pytest.mark.parametrize("spec, message", [
    ("tests.search.no_such_module:tiny", "cannot load model factory"),
    ("tests.search.detectors:missing", "cannot load model factory"),
    ("tests.search.detectors:not_a_module", "returned str, not a torch nn.Module"),
    ("tests.search.detectors:broken", "failed (ValueError: weights file missing)"),
    ("tests.search.detectors:plain_classifier", "returned Tensor in eval mode"),
])
def test_bad_factories_are_one_line_errors(box_files, tmp_path, spec, message):
    train, val = box_files
    with pytest.raises(ModelError, match=re.escape(message)):
        ftcompile.harden(spec, train, val, out=tmp_path / "x.onnx", plot=False)
    r = CliRunner().invoke(app, ["harden", spec, "--train", str(train), "--val", str(val),
                                 "--out", str(tmp_path / "y.onnx")])
    assert r.exit_code == 2 and message.split(" (")[0] in r.output and "Traceback" not in r.output
    assert not (tmp_path / "y.onnx").exists()


def test_module_harden_refuses_what_it_cannot_do(box_files, tmp_path):
    train, val = box_files
    with pytest.raises(ConfigError, match="give --out"):
        ftcompile.harden(FACTORY, train, val, plot=False)
    with pytest.raises(ConfigError, match="searched on its mAP"):
        ftcompile.harden(FACTORY, train, val, out=tmp_path / "f.onnx", config=HardenConfig(method="ftna"), plot=False)
    x = np.random.default_rng(0).standard_normal((8, 3, 32, 32)).astype(np.float32)
    np.savez(tmp_path / "cls.npz", x=x, y=np.zeros(8, np.int64))
    with pytest.raises(ConfigError, match="hardened as a detector"):
        ftcompile.harden(FACTORY, tmp_path / "cls.npz", tmp_path / "cls.npz", out=tmp_path / "c.onnx", plot=False)
    assert not list(tmp_path.glob("*.onnx"))


class _ScaledTruth(torch.nn.Module):
    """A 'detector' that returns the true boxes scaled by its one weight: mAP 1 on clean weights, lower when the
    weight drifts (the boxes no longer overlap the truth)."""

    def __init__(self, boxes: torch.Tensor):
        super().__init__()
        self.gain = torch.nn.Parameter(torch.ones(1))
        self.boxes = boxes

    def forward(self, images):
        start = int(images[0, 0, 0, 0])  # each image carries its own index
        return [{"boxes": self.boxes[start + i] * self.gain, "scores": torch.ones(1),
                 "labels": torch.ones(1, dtype=torch.int64)}
                for i in range(len(images))]


@pytest.mark.parametrize("drift", ["lognormal:1.0", "gaussian:0.5"])  # the vmapped-draws path and the runtime's draws
def test_detection_objective_scores_map_under_the_drift(drift):
    from ftcompile.labels import BoxLabels
    from ftcompile.runtime.drift import LogNormalDrift, parse_drift
    from ftcompile.runtime.tasks import CocoMAP
    from ftcompile.search.objective import DetectionObjective

    n = 12
    boxes = torch.tensor([[[8.0, 8.0, 20.0, 24.0]]]).repeat(n, 1, 1) + torch.arange(n).view(n, 1, 1)
    truth = BoxLabels(boxes.numpy().astype(np.float64), np.ones((n, 1), np.int64), np.ones(n, np.int64))
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    model = _ScaledTruth(boxes)
    clean = DetectionObjective(model, x, truth, drift=LogNormalDrift(0.0), samples=2, metric=CocoMAP(0.5), batch=5)
    assert clean(model).mean == pytest.approx(1.0)
    drifted = DetectionObjective(model, x, truth, drift=parse_drift(drift), samples=8, metric=CocoMAP(0.5), batch=5)
    score = drifted(model)
    assert score.mean < 0.9 and len(set(score.values)) > 1  # each sample its own drift, and the drift hurts


def test_sigma_auto_finds_a_detector_s_half_map_sigma(box_files, tmp_path):
    """The module path: the sigma where the source export keeps half its validation mAP."""
    train, val = box_files
    cfg = HardenConfig(sigma="auto", method="noise-injection", final_epochs=1, samples=2, batch_size=16,
                       blend="off", train_sigma=0.05)
    r = ftcompile.harden("tests.search.detectors:trained", train, val, out=tmp_path / "a.onnx", config=cfg,
                         validate_samples=2, plot=False)
    auto = r.sigma_auto
    assert auto["clean"] > 0.2 and r.after.drift == f"lognormal:{auto['sigma']:g}"
    below = [m for s, m in auto["points"] if s >= auto["sigma"]]
    above = [m for s, m in auto["points"] if 0 < s < auto["sigma"]]
    assert min(below) <= auto["clean"] / 2 < max(above)
    with pytest.raises(ConfigError, match="nothing to halve"):  # the untrained detector finds nothing
        ftcompile.harden(FACTORY, train, val, out=tmp_path / "u.onnx", config=cfg, validate_samples=2, plot=False)
