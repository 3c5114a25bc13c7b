"""ftcompile: harden neural networks against analog weight drift and sign them off under simulated drift.

The runtime verbs (``validate``, ``sweep``) need only numpy and onnxruntime; ``harden`` needs torch.
"""
__version__ = "0.1.0"

from ftcompile.api import HardenResult, SweepResult, harden, sweep, validate  # noqa: F401,E402
from ftcompile.errors import FtcompileError  # noqa: F401,E402
from ftcompile.runtime.drift import parse_drift, register_drift  # noqa: F401,E402
from ftcompile.runtime.validate import Gate, ValidationResult  # noqa: F401,E402
