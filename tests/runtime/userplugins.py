"""A toolchain's own drift model and metric, loaded by the CLI as ``tests.runtime.userplugins:ATTR``."""
import numpy as np

from ftcompile.runtime.drift import TableDrift

_rng = np.random.default_rng(7)
_g = _rng.uniform(1.0, 100.0, 4000)           # programmed conductances (uS)
device = TableDrift(_g, _g * np.exp(_rng.normal(0.0, 0.5, _g.size)), bins=4, source="measured-chip-7")
CALLS = []


def worst_class_recall(outputs: np.ndarray, labels: np.ndarray) -> float:
    """The recall of the worst class: a metric a safety-minded toolchain gates on."""
    CALLS.append(len(labels))
    pred = outputs.argmax(1)
    return float(min(np.mean(pred[labels == c] == c) for c in np.unique(labels)))
