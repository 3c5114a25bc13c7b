import numpy as np
import pytest

from tests.helpers import teacher_files


@pytest.fixture()
def files(tmp_path):
    """A tiny teacher MLP (ONNX) and its own labels split 200 / 100 into train.npz and val.npz."""
    model, data = teacher_files(tmp_path, n=300)
    d = np.load(data)
    for name, sl in (("train", slice(0, 200)), ("val", slice(200, 300))):
        np.savez(tmp_path / f"{name}.npz", x=d["x"][sl], y=d["y"][sl])
    return model, tmp_path / "train.npz", tmp_path / "val.npz"
