"""analyze (per-layer sensitivity), the measured-table drift model and user metrics through the CLI."""
import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

import ftcompile
from ftcompile.cli import app
from ftcompile.errors import ConfigError
from ftcompile.runtime.drift import TableDrift, draw_sample, parse_drift
from tests.runtime import userplugins


def two_branch(tmp_path, n=400):
    """logits = signal(x) + 0.001 * whisper(x): drifting 'signal' costs accuracy, 'whisper' nothing."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 16)).astype(np.float32), "ws"),
             numpy_helper.from_array(rng.standard_normal((4, 16)).astype(np.float32), "ww"),
             numpy_helper.from_array(np.zeros(4, np.float32), "bs"),
             numpy_helper.from_array(np.zeros(4, np.float32), "bw"),
             numpy_helper.from_array(np.array(1e-3, np.float32), "tiny")]
    nodes = [helper.make_node("Gemm", ["x", "ws", "bs"], ["s"], name="signal", transB=1),
             helper.make_node("Gemm", ["x", "ww", "bw"], ["w"], name="whisper", transB=1),
             helper.make_node("Mul", ["w", "tiny"], ["wt"], name="scale"),
             helper.make_node("Add", ["s", "wt"], ["logits"], name="add")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    x = rng.standard_normal((n, 16)).astype(np.float32)
    y = (x @ numpy_helper.to_array(inits[0]).T).argmax(1).astype(np.int64)
    onnx.save(model, tmp_path / "two.onnx")
    np.savez(tmp_path / "data.npz", x=x, y=y)
    return tmp_path / "two.onnx", tmp_path / "data.npz"


def test_analyze_names_the_harmful_layer_first_with_separated_intervals(tmp_path):
    model, data = two_branch(tmp_path)
    result = ftcompile.analyze(model, data, sigma=1.0, samples=20)
    first, last = result.layers
    assert (first.layer, last.layer) == ("signal", "whisper") and result.clean == 1.0
    assert first.drop > 0.1 and abs(last.drop) < 0.01
    assert first.drift_ci_high < last.drift_ci_low  # separated beyond Monte-Carlo noise
    assert result.all_layers.drop >= first.drop - 0.02 and result.all_layers.weights == 2 * 64 + 2 * 4


def test_cli_analyze_writes_json_markdown_and_plot(tmp_path):
    model, data = two_branch(tmp_path)
    args = ["analyze", str(model), "--data", str(data), "--sigma", "1.0", "--samples", "8"]
    r = CliRunner().invoke(app, args + ["--json", "--report", str(tmp_path / "a.json"),
                                        "--markdown", str(tmp_path / "a.md"), "--plot", str(tmp_path / "a.png")])
    assert r.exit_code == 0, r.output
    payload = json.loads(r.stdout)
    assert payload["schema"] == "ftcompile.analysis/1" and payload["most_sensitive"] == "signal"
    assert json.loads((tmp_path / "a.json").read_text())["layers"][0]["layer"] == "signal"
    assert "| signal | Gemm |" in (tmp_path / "a.md").read_text()
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"
    table = CliRunner().invoke(app, args)
    assert table.exit_code == 0 and table.output.index("signal") < table.output.index("whisper")
    bad = CliRunner().invoke(app, args + ["--samples", "0"])
    assert bad.exit_code == 2 and "--samples" in bad.output
    bad = CliRunner().invoke(app, args + ["--metric", "f1ish"])
    assert bad.exit_code == 2 and "--metric" in bad.output


def test_table_drift_maps_levels_and_draws_measured_ratios():
    # two populations: low conductances read back at half, high ones exactly
    g = np.array([10.0] * 50 + [90.0] * 50)
    table = TableDrift(g, np.where(g < 50, g * 0.5, g), bins=2)
    w = np.array([0.1, -0.1, 1.0, -1.0], np.float32)
    out = table.apply(w, np.random.default_rng(0))
    np.testing.assert_allclose(out, [0.05, -0.05, 1.0, -1.0])
    # stochastic ratios: the drifted log-ratio has the measured spread (fails if ratios are not drawn per weight)
    rng = np.random.default_rng(1)
    g = rng.uniform(1, 100, 5000)
    table = TableDrift(g, g * np.exp(rng.normal(0, 0.3, g.size)), bins=4)
    w = rng.uniform(0.2, 1.0, 20000).astype(np.float32)
    log_ratio = np.log(table.apply(w, np.random.default_rng(2)) / w)
    assert abs(log_ratio.mean()) < 0.02 and abs(log_ratio.std() - 0.3) < 0.02


def test_table_drift_from_files_and_bad_tables(tmp_path):
    rows = "g,g_read\n" + "\n".join(f"{g},{g * 0.9}" for g in range(1, 11))
    (tmp_path / "t.csv").write_text(rows)
    d = parse_drift(f"table:{tmp_path / 't.csv'}:2")
    np.testing.assert_allclose(d.apply(np.ones(3, np.float32), np.random.default_rng(0)), 0.9, rtol=1e-6)
    np.savez(tmp_path / "t.npz", g=np.arange(1.0, 5.0), g_read=np.arange(1.0, 5.0))
    assert isinstance(parse_drift(f"table:{tmp_path / 't.npz'}"), TableDrift)
    (tmp_path / "bad.csv").write_text("g,g_read\n1,2\n")
    with pytest.raises(ConfigError, match="needs >= 2 pairs"):
        parse_drift(f"table:{tmp_path / 'bad.csv'}")
    with pytest.raises(ConfigError, match="cannot read drift table"):
        parse_drift(f"table:{tmp_path / 'missing.csv'}")


def test_user_drift_and_metric_from_python_work_in_the_cli(tmp_path):
    model, data = two_branch(tmp_path)
    userplugins.CALLS.clear()
    r = CliRunner().invoke(app, ["validate", str(model), "--data", str(data), "--samples", "5", "--json",
                                 "--drift", "tests.runtime.userplugins:device",
                                 "--metric", "tests.runtime.userplugins:worst_class_recall"])
    assert r.exit_code == 0, r.output
    payload = json.loads(r.stdout)
    assert payload["drift"] == "table:measured-chip-7:4" and payload["metric"] == "worst_class_recall"
    assert len(userplugins.CALLS) == 6  # clean + 5 samples, each over the whole dataset
    # the same draws as the Python API: sample k is keyed by (seed, k, tensor)
    session = ftcompile.api.open_session(model)
    first = draw_sample(userplugins.device, session.weights, 0, 0)
    assert not np.allclose(first["ws"], session.weights["ws"])
    direct = ftcompile.validate(model, data, drift=userplugins.device, samples=5,
                                metric=userplugins.worst_class_recall)
    assert direct.values == payload["values"]
