"""``.npz`` files: arrays by name, never unpickled."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ftcompile.errors import DataError, one_line


def load_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Arrays of an ``.npz`` file; object arrays are refused (never unpickled)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such data file; check the path.")
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except MemoryError:
        raise DataError(f"{path}: declares arrays too large for memory; the file is corrupt or not meant "
                        "for this.") from None
    except Exception as exc:  # zip, header and CRC damage surface as many types (BadZipFile, TokenError, ...)
        if isinstance(exc, ValueError) and "pickle" in str(exc).lower():
            raise DataError(f"{path}: holds object arrays, which are refused; save plain numeric arrays.") from None
        raise DataError(f"{path}: not a readable .npz file ({one_line(exc)}); save it with numpy.savez.") from None
