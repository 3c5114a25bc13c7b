"""Hostile and odd inputs: byte-flipped models and data, external-data escapes, cycles, huge and empty
tensors, pickled npz. Every case ends in a result or a one-line FtcompileError, never another exception."""
import io
import os
import zipfile

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, numpy_helper
from typer.testing import CliRunner

import ftcompile
from ftcompile.cli import app
from ftcompile.errors import DataError, FtcompileError, ModelError
from tests.helpers import teacher_files, teacher_mlp

FUZZ = settings(max_examples=int(os.environ.get("FTCOMPILE_FUZZ_EXAMPLES", "60")), deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


class Valid:
    def __init__(self, tmp):
        self.tmp = tmp
        model, data = teacher_files(tmp, n=64)
        self.model, self.data = model.read_bytes(), data.read_bytes()

    def __repr__(self) -> str:  # keep falsifying examples short
        return f"Valid({self.tmp})"


@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    return Valid(tmp_path_factory.mktemp("fuzz"))


def _flip(blob: bytes, flips) -> bytes:
    b = bytearray(blob)
    for pos, value in flips:
        b[pos % len(b)] = value
    return bytes(b)


flips = st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=8)


@pytest.mark.parametrize("target", ["model", "data"])
@FUZZ
@given(flips=flips)
def test_byte_flipped_inputs_end_in_a_result_or_a_clear_error(valid, target, flips):
    model, data = valid.tmp / "model.onnx", valid.tmp / "data.npz"
    flipped = valid.tmp / f"flipped{model.suffix if target == 'model' else data.suffix}"
    flipped.write_bytes(_flip(getattr(valid, target), flips))
    try:
        ftcompile.validate(flipped if target == "model" else model, flipped if target == "data" else data, samples=2)
    except FtcompileError as exc:
        assert "\n" not in str(exc) and str(flipped) in str(exc)


def _save(model: onnx.ModelProto, path, check=False):
    if check:
        onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def test_external_data_outside_the_model_folder_is_refused(tmp_path):
    model = teacher_mlp()
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.ones(16 * 32, np.float32).tobytes())
    (tmp_path / "models").mkdir()
    w = next(i for i in model.graph.initializer if i.name == "fc0.weight")
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    w.external_data.add(key="location", value="../secret.bin")
    path = _save(model, tmp_path / "models" / "escape.onnx")
    with pytest.raises(ModelError, match="outside the model's folder; refused"):
        ftcompile.validate(path, (np.zeros((2, 16), np.float32), np.zeros(2, np.int64)))
    w.external_data[0].value = str(secret)  # absolute paths too
    with pytest.raises(ModelError, match="refused"):
        ftcompile.validate(_save(model, tmp_path / "models" / "abs.onnx"),
                           (np.zeros((2, 16), np.float32), np.zeros(2, np.int64)))
    w.external_data[0].value = "beside.bin"  # inside the folder but missing
    with pytest.raises(ModelError, match="is missing"):
        ftcompile.validate(_save(model, tmp_path / "models" / "gone.onnx"),
                           (np.zeros((2, 16), np.float32), np.zeros(2, np.int64)))
    (tmp_path / "models" / "beside.bin").write_bytes(secret.read_bytes())  # inside and present: accepted
    r = ftcompile.validate(_save(model, tmp_path / "models" / "ok.onnx"),
                           (np.zeros((2, 16), np.float32), np.zeros(2, np.int64)), samples=2)
    assert r.samples == 2


def test_cyclic_huge_and_empty_models_are_refused(tmp_path):
    x = (np.zeros((2, 16), np.float32), np.zeros(2, np.int64))
    cyclic = teacher_mlp()
    relu = next(n for n in cyclic.graph.node if n.op_type == "Relu")
    relu.input[0] = "h1"  # fc1 reads relu's output: a cycle
    with pytest.raises(ModelError, match="invalid ONNX model"):
        ftcompile.validate(_save(cyclic, tmp_path / "cyclic.onnx"), x)
    huge = teacher_mlp()
    w = next(i for i in huge.graph.initializer if i.name == "fc0.weight")
    w.dims[:] = [10**9, 10**9]  # declared far beyond its bytes
    with pytest.raises(ModelError):
        ftcompile.validate(_save(huge, tmp_path / "huge.onnx"), x)
    empty = teacher_mlp()
    w = next(i for i in empty.graph.initializer if i.name == "fc0.weight")
    w.CopyFrom(numpy_helper.from_array(np.zeros((0, 16), np.float32), "fc0.weight"))
    with pytest.raises(FtcompileError):
        ftcompile.validate(_save(empty, tmp_path / "empty.onnx"), x)


def test_object_arrays_in_npz_are_never_unpickled(tmp_path):
    buf = io.BytesIO()
    np.save(buf, np.array([{"evil": 1}, None], dtype=object), allow_pickle=True)
    with zipfile.ZipFile(tmp_path / "pickled.npz", "w") as z:
        z.writestr("x.npy", buf.getvalue())
        z.writestr("y.npy", b"")
    model, _ = teacher_files(tmp_path)
    with pytest.raises(DataError, match="pickle|object"):
        ftcompile.validate(model, tmp_path / "pickled.npz")
    r = CliRunner().invoke(app, ["validate", str(model), "--data", str(tmp_path / "pickled.npz")])
    assert r.exit_code == 2 and "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1


def test_an_output_that_declares_no_classes_is_the_model_s_fault(tmp_path):
    # found by the byte-flip fuzz above (one flipped byte of the output's shape): the data was blamed before
    model, data = teacher_files(tmp_path, n=16)
    proto = onnx.load(model)
    proto.graph.output[0].type.tensor_type.shape.dim[-1].dim_value = 0
    path = _save(proto, tmp_path / "no_classes.onnx")
    with pytest.raises(ModelError, match=r"no_classes.onnx: output '\w+' declares 0 classes; the export is broken"):
        ftcompile.validate(path, data, samples=2)
