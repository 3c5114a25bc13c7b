"""The drift-validation runtime: numpy + onnxruntime only, importable without torch."""
from ftcompile.runtime.drift import (  # noqa: F401
    CompositeDrift,
    DriftModel,
    GaussianDrift,
    LogNormalDrift,
    QuantizeDrift,
    StuckAtDrift,
    draw_sample,
    parse_drift,
    register_drift,
    with_sigma,
)
from ftcompile.runtime.metrics import accuracy, top_k_accuracy  # noqa: F401
from ftcompile.runtime.session import DriftSession  # noqa: F401
from ftcompile.runtime.stats import SampleStats, summarize  # noqa: F401
from ftcompile.runtime.validate import Gate, ValidationResult, evaluate  # noqa: F401
