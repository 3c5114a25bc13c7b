"""The drift-validation runtime: numpy + onnxruntime only, importable without torch."""
from ftcompile.runtime.drift import (  # noqa: F401
    CompositeDrift,
    DriftModel,
    GaussianDrift,
    LogNormalDrift,
    QuantizeDrift,
    StuckAtDrift,
    TableDrift,
    draw_sample,
    parse_drift,
    register_drift,
    with_sigma,
)
from ftcompile.runtime.analyze import Sensitivity, analyze_session  # noqa: F401
from ftcompile.runtime.metrics import accuracy, parse_metric, top_k_accuracy  # noqa: F401
from ftcompile.runtime.session import DriftSession  # noqa: F401
from ftcompile.runtime.stats import SampleStats, summarize  # noqa: F401
from ftcompile.runtime.validate import Gate, ValidationResult, evaluate  # noqa: F401
