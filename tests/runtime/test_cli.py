"""The CLI through typer's runner, including every bad-input path (one line, exit 2, no partial report)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from ftcompile.cli import app
from tests.helpers import teacher_files, teacher_mlp

runner = CliRunner()


@pytest.fixture()
def files(tmp_path):
    return teacher_files(tmp_path)


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_validate_pass_fail_and_reports(files, tmp_path):
    model, data = files
    ok = run("validate", model, "--data", data, "--sigma", "0.2", "--samples", "10", "--min-accuracy", "0.5",
             "--report", tmp_path / "r.json", "--markdown", tmp_path / "r.md", "--junit", tmp_path / "r.xml")
    assert ok.exit_code == 0, ok.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["verdict"] == "pass" and report["samples"] == 10
    bad = run("validate", model, "--data", data, "--sigma", "1.0", "--samples", "10", "--min-accuracy", "0.99")
    assert bad.exit_code == 1 and "FAIL" in bad.output
    js = run("validate", model, "--data", data, "--samples", "5", "--json")
    assert js.exit_code == 0 and json.loads(js.stdout)["schema"] == "ftcompile.validation/3"


def test_list_targets_and_sweep(files, tmp_path):
    model, data = files
    r = run("validate", model, "--data", data, "--list-targets", "--json")
    assert r.exit_code == 0 and [t["name"] for t in json.loads(r.stdout)][0] == "fc0.weight"
    s = run("sweep", model, "--data", data, "--sigmas", "0:1:0.5", "--samples", "4", "--plot", tmp_path / "c.png",
            "--report", tmp_path / "s.json")
    assert s.exit_code == 0, s.output
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    assert len(json.loads((tmp_path / "s.json").read_text())["curves"]["model"]) == 3


def _bad_data(tmp_path, **arrays):
    p = tmp_path / f"bad{len(list(tmp_path.glob('bad*.npz')))}.npz"
    np.savez(p, **arrays)
    return p


def _cases(tmp_path, model, data):
    x = np.load(data)["x"]
    y = np.load(data)["y"]
    trunc = tmp_path / "trunc.onnx"
    trunc.write_bytes(model.read_bytes()[: len(model.read_bytes()) // 2])
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not a model")
    relu = helper.make_model(helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 16])]),
        opset_imports=[helper.make_opsetid("", 17)])
    noweights = tmp_path / "relu.onnx"
    onnx.save(relu, noweights)
    two = teacher_mlp()
    two.graph.output.append(helper.make_tensor_value_info("h0", TensorProto.FLOAT, ["N", 32]))
    twoout = tmp_path / "two.onnx"
    onnx.save(two, twoout)
    obj = tmp_path / "obj.npz"
    np.savez(obj, x=np.array([object()] * 3, dtype=object), y=y[:3])
    nan = x.copy()
    nan[3, 2] = np.nan
    (tmp_path / "sub").mkdir(exist_ok=True)
    escape = teacher_mlp()
    w = escape.graph.initializer[0]
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    w.external_data.add(key="location", value="../../etc/passwd")
    (tmp_path / "sub" / "escape.onnx").write_bytes(escape.SerializeToString())
    cyclic = teacher_mlp()
    next(n for n in cyclic.graph.node if n.op_type == "Relu").input[0] = "h1"
    (tmp_path / "cyclic.onnx").write_bytes(cyclic.SerializeToString())
    huge = teacher_mlp()
    huge.graph.initializer[0].dims[:] = [10**9, 10**9]
    (tmp_path / "huge.onnx").write_bytes(huge.SerializeToString())
    zero = teacher_mlp()
    zero.graph.initializer[0].CopyFrom(numpy_helper.from_array(np.zeros((0, 16), np.float32), "fc0.weight"))
    (tmp_path / "zero.onnx").write_bytes(zero.SerializeToString())
    corrupt = bytearray(data.read_bytes())
    corrupt[122] = 0  # inside the first array's header
    (tmp_path / "corrupt.npz").write_bytes(bytes(corrupt))
    return {
        "missing model": ([tmp_path / "nope.onnx", "--data", data], "no such model"),
        "not onnx": ([junk, "--data", data], "not an ONNX model"),
        "truncated": ([trunc, "--data", data], "protobuf parse failed"),
        "no weights": ([noweights, "--data", data], "no drifting weights"),
        "several outputs": ([twoout, "--data", data], "--output"),
        "shape": ([model, "--data", _bad_data(tmp_path, x=x[:, :8], y=y)], "expects"),
        "dtype": ([model, "--data", _bad_data(tmp_path, x=(x * 10).astype(np.int32), y=y)], "convert"),
        "input name": ([model, "--data", _bad_data(tmp_path, pixels=x, y=y)], "no array for model input"),
        "labels range": ([model, "--data", _bad_data(tmp_path, x=x, y=y + 4)], "labels span"),
        "labels length": ([model, "--data", _bad_data(tmp_path, x=x, y=y[:-1])], "labels for"),
        "labels float": ([model, "--data", _bad_data(tmp_path, x=x, y=y.astype(np.float32))], "integer"),
        "no labels": ([model, "--data", _bad_data(tmp_path, x=x)], "no labels"),
        "empty": ([model, "--data", _bad_data(tmp_path, x=x[:0], y=y[:0])], "empty"),
        "nan": ([model, "--data", _bad_data(tmp_path, x=nan, y=y)], "NaN"),
        "object arrays": ([model, "--data", obj], "object"),
        "missing data": ([model, "--data", tmp_path / "nope.npz"], "no such data"),
        "sigma < 0": ([model, "--data", data, "--sigma", "-0.1"], "sigma"),
        "samples < 1": ([model, "--data", data, "--samples", "0"], "samples"),
        "bad drift": ([model, "--data", data, "--drift", "wobble:2"], "unknown drift"),
        "bad stat": ([model, "--data", data, "--stat", "max", "--min-accuracy", "0.5"], "--stat"),
        "bad threshold": ([model, "--data", data, "--min-accuracy", "90"], "fraction"),
        "unwritable report": ([model, "--data", data, "--report", tmp_path / "no" / "dir" / "r.json"],
                              "does not exist"),
        "external data outside the model folder": ([tmp_path / "sub" / "escape.onnx", "--data", data], "refused"),
        "cyclic graph": ([tmp_path / "cyclic.onnx", "--data", data], "invalid ONNX"),
        "huge declared dims": ([tmp_path / "huge.onnx", "--data", data], "too small for the declared shape"),
        "zero-size weight": ([tmp_path / "zero.onnx", "--data", data], "'fc0.weight' of fc0 has no elements"),
        "corrupt npz": ([model, "--data", tmp_path / "corrupt.npz"], "not a readable .npz"),
        "bad metric": ([model, "--data", data, "--metric", "f1ish"], "--metric"),
        "bad executor": ([model, "--data", data, "--executor", "dask", "--workers", "2"], "--executor"),
        "workers < 1": ([model, "--data", data, "--workers", "0"], "--workers"),
    }


def test_every_bad_input_is_one_line_exit_2(files, tmp_path):
    model, data = files
    for name, (args, needle) in _cases(tmp_path, model, data).items():
        extra = [] if "--samples" in args else ["--samples", "2"]
        r = run("validate", *args, *extra, "--markdown", tmp_path / f"{name}.md")
        assert r.exit_code == 2, (name, r.output)
        assert needle.lower() in r.output.lower(), (name, r.output)
        assert len(r.output.strip().splitlines()) == 1 and r.output.startswith("error: "), (name, r.output)
        assert "Traceback" not in r.output, name
        assert not (tmp_path / f"{name}.md").exists(), name


def test_readme_lists_every_bad_input_class(files, tmp_path):
    """docs/troubleshooting.md's list of handled bad inputs is this test's list: neither may drift from the other."""
    model, data = files
    readme = (Path(__file__).resolve().parents[2] / "docs" / "troubleshooting.md").read_text()
    section = readme.split("<!-- bad-inputs -->")[1].split("<!-- /bad-inputs -->")[0]
    listed = {line.strip()[2:].split(":")[0] for line in section.splitlines() if line.startswith("- ")}
    assert listed == set(_cases(tmp_path, model, data)), listed ^ set(_cases(tmp_path, model, data))


def test_usage_error_exits_2(files):
    model, data = files
    assert run("validate", model, "--data", data, "--samples", "many").exit_code == 2
    assert run("sweep", model, "--data", data, "--sigmas", "1:0:-1").exit_code == 2


NO_TORCH = ("import sys\n"
            "class _NoTorch:\n"  # as on a machine without torch: the import fails, nothing is in sys.modules
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'torch' or name.startswith('torch.'):\n"
            "            raise ModuleNotFoundError(\"No module named 'torch'\", name='torch')\n"
            "sys.meta_path.insert(0, _NoTorch())\n")


def test_validate_runs_without_torch(files):
    model, data = files
    code = (NO_TORCH + "import ftcompile.runtime, ftcompile.cli\n"
            "from ftcompile.cli import app\n"
            f"try:\n    app(['validate', {str(model)!r}, '--data', {str(data)!r}, '--samples', '3'])\n"
            "except SystemExit as e:\n    assert 'torch' not in sys.modules\n"
            "    sys.exit(e.code)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "verdict" in r.stdout


def test_torch_free_machine_gets_an_install_hint_for_harden_and_inspect(files, tmp_path):
    model, data = files
    for args in (["inspect", str(model)], ["inspect", "--ops"],
                 ["harden", str(model), "--train", str(data), "--val", str(data)]):
        code = (NO_TORCH + "from ftcompile.cli import app\n"
                f"app({args!r})\n")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert r.returncode == 2, (args, r.stderr)
        assert "pip install 'ftcompile[harden]'" in r.stderr and "internal error" not in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_missing_provider_is_refused_not_silently_replaced(files):
    model, data = files
    r = run("validate", model, "--data", data, "--samples", "2", "--provider", "cuda")
    assert r.exit_code == 2 and "CUDAExecutionProvider" in r.output and "--provider cpu" in r.output


def test_inspect_lists_the_supported_ops():
    r = run("inspect", "--ops")
    assert r.exit_code == 0 and {"Conv", "LSTM", "GridSample", "Split"} <= set(r.stdout.split())


def test_shared_options_are_the_same_everywhere():
    """Options several commands take are declared once: same flags, same defaults."""
    import typer

    commands = {c.name: c for c in typer.main.get_command(app).commands.values()}
    shared = ("--targets", "--bias", "--seed", "--output", "--metric", "--provider", "--batch-size", "--quiet",
              "--json", "--workers", "--executor")
    seen = {}
    for name, cmd in commands.items():
        for p in cmd.params:
            if getattr(p, "param_type_name", "") == "option":
                for flag in p.opts:
                    if flag in shared:
                        seen.setdefault(flag, {})[name] = p.default
    for flag, defaults in seen.items():
        assert len(set(map(str, defaults.values()))) == 1, (flag, defaults)
    assert {"--targets", "--bias"} <= {f for f, d in seen.items() if "harden" in d and "sweep" in d}
