"""ftcompile: harden neural networks against analog weight drift and sign them off under simulated drift.

The runtime verbs (``validate``, ``sweep``, ``analyze``) need only numpy and onnxruntime; ``harden`` and
``load_model`` need torch (imported when called). The public names load on first use (PEP 562), so the command
line starts without numpy or onnx until a command needs them.
"""
__version__ = "0.2.0"  # the one place the version is written (pyproject reads it; CHANGELOG.md names it)

# public name -> the module that defines it
_PUBLIC = {
    **dict.fromkeys(("HardenResult", "SweepResult", "analyze", "harden", "load_model", "sweep", "validate"),
                    "ftcompile.api"),
    "FtcompileError": "ftcompile.errors",
    **dict.fromkeys(("DriftModel", "parse_drift", "register_drift"), "ftcompile.runtime.drift"),
    "parse_metric": "ftcompile.runtime.metrics",
    **dict.fromkeys(("Gate", "ValidationResult"), "ftcompile.runtime.validate"),
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    import importlib

    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    try:  # a submodule, as ``ftcompile.api`` after a bare ``import ftcompile``
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{name}":
            raise
    raise AttributeError(f"module 'ftcompile' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC))
