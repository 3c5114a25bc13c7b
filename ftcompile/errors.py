"""One exception hierarchy; every message names the input, what is wrong, and the fix.

The CLI maps ``exit_code`` to the process exit status, so a release pipeline can tell a failed
gate (1) from bad input (2) and an interruption (130).
"""
from __future__ import annotations

EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


class FtcompileError(Exception):
    """Base of every error ftcompile reports to a user."""

    exit_code = EXIT_BAD_INPUT


class ModelError(FtcompileError):
    """The model file cannot be read, is not ONNX, or is not valid ONNX."""


class UnsupportedModelError(FtcompileError):
    """The model is valid but uses something ftcompile cannot handle (op, domain, outputs)."""


class ParityError(FtcompileError):
    """An imported or exported model does not compute what the source computes."""


class DataError(FtcompileError):
    """The data file does not fit the model (shape, dtype, labels, NaN, empty)."""


class ConfigError(FtcompileError):
    """A flag or config value is out of range or malformed."""


class OutputError(FtcompileError):
    """An output path cannot be written."""


class Interrupted(FtcompileError):
    """The user interrupted a long run; everything finished so far is kept."""

    exit_code = EXIT_INTERRUPTED


def one_line(exc: BaseException, *, last: bool = False) -> str:
    """An exception as one short line for an error message: its first line (``last``: its last, where
    onnxruntime puts the useful part), or its type when it has no text."""
    lines = str(exc).strip().splitlines()
    return (lines[-1 if last else 0] if lines else type(exc).__name__)[:300]
