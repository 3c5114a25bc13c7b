"""Which data each number came from: a record per data set (file, sha256, examples, role) and per-example hashes.

A sign-off is only worth its data's independence from every choice behind the model, so reports and the hardened
model's metadata name each data set they used, and ``harden`` checks the sign-off data against the data that chose
the recipe: an identical file is refused, and exact duplicates of examples are counted (``overlap``). Examples are
compared by a hash of their input bytes (inputs only: a duplicate image with another label is still a duplicate).
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

import numpy as np

# a sign-off share of examples also present in the selection data above this is worth a warning
OVERLAP_WARNING = 0.05


@dataclass(frozen=True)
class DataRecord:
    """One data set as a report names it.

    ``role``: what it was used for (train, val, signoff, data, calibration); ``source``: the file (or
    ``<arrays>``); ``sha256``: of the file, or of the arrays when the data came from memory; ``examples``: how
    many were used; ``subset``: how they were taken from the source when not all of it (``holdout 1/3``).
    """

    role: str
    source: str
    sha256: str
    examples: int
    subset: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        part = f", {self.subset}" if self.subset else ""
        return f"{self.source} (sha256 {self.sha256[:12]}, {self.examples:,} examples{part})"


def arrays_sha256(arrays: dict) -> str:
    """sha256 over named arrays (name, dtype, shape and bytes, in name order): the digest of in-memory data."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def example_hashes(inputs: dict) -> np.ndarray:
    """One 64-bit hash per example of its input arrays' bytes (``n`` uint64; first axis = examples)."""
    n = len(next(iter(inputs.values())))
    rows = [np.ascontiguousarray(inputs[k]).reshape(n, -1) for k in sorted(inputs)]
    out = np.empty(n, np.uint64)
    for i in range(n):
        h = hashlib.blake2b(digest_size=8)
        for r in rows:
            h.update(r[i].tobytes())
        out[i] = int.from_bytes(h.digest(), "little")
    return out


def overlap_share(signoff: np.ndarray, *others: np.ndarray) -> float:
    """The share of ``signoff``'s example hashes that also occur in any of ``others``."""
    if not len(signoff):
        return 0.0
    seen = np.concatenate(others) if others else np.empty(0, np.uint64)
    return float(np.isin(signoff, seen).mean())
