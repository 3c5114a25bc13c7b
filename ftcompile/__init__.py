"""ftcompile: harden neural networks against analog weight drift and sign them off under simulated drift.

The runtime verbs (``validate``, ``sweep``, ``analyze``) need only numpy and onnxruntime; ``harden`` and
``load_model`` need torch (imported when called).
"""
__version__ = "0.1.0"  # the one place the version is written (pyproject reads it; CHANGELOG.md names it)

from ftcompile.api import HardenResult, SweepResult, analyze, harden, load_model, sweep, validate  # noqa: F401,E402
from ftcompile.errors import FtcompileError  # noqa: F401,E402
from ftcompile.runtime.drift import DriftModel, parse_drift, register_drift  # noqa: F401,E402
from ftcompile.runtime.metrics import parse_metric  # noqa: F401,E402
from ftcompile.runtime.validate import Gate, ValidationResult  # noqa: F401,E402
