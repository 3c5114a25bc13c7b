"""Atomic output files: a reader never sees a half-written model or report."""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from ftcompile.errors import OutputError


def check_writable(path: Path) -> None:
    """Fail before long work starts if ``path`` cannot be created."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise OutputError(f"{path}: is a directory; give a file path for the output.")
    if parent.exists() and not parent.is_dir():
        raise OutputError(f"{path}: {parent} is a file, not a directory; choose another path.")
    if not parent.is_dir():
        raise OutputError(f"{path}: directory {parent} does not exist; create it or choose another path.")
    # create and remove a file rather than ask os.access: root passes access() on read-only mounts,
    # /sys, /proc and immutable directories, then fails only when the output is written
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"{path}: directory {parent} is not writable ({exc.strerror or exc}); choose a writable "
                          "path.") from None


def check_free_space(path: Path, needed: int) -> None:
    """Fail before long work starts if ``path``'s file system has less than ``needed`` bytes free."""
    parent = Path(path).parent if str(Path(path).parent) else Path(".")
    free = shutil.disk_usage(parent).free
    if free < needed:
        raise OutputError(f"{path}: only {free / 2**20:.1f} MiB free in {parent}, about {needed / 2**20:.1f} MiB "
                          "needed; free some space or choose another directory.")


def _read_umask() -> int:
    umask = os.umask(0)  # the only way to read it is to set it: once, at import, before any thread writes
    os.umask(umask)
    return umask


UMASK = _read_umask()


def _mode_for(path: Path) -> int:
    """The permissions ``path`` would get from a plain ``open``: an existing file's own, else 0666 less the
    umask (``mkstemp`` makes its file 0600, which left models and reports unreadable to other users)."""
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        return 0o666 & ~UMASK


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    """Write to a temporary file beside ``path``, fsync, then rename over it (with ``path``'s permissions)."""
    path = Path(path)
    check_writable(path)
    mode = _mode_for(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError):  # disk full, quota, I/O error: the old file (if any) is intact
            raise OutputError(f"{path}: cannot write ({exc.strerror or exc}); free some space or choose another "
                              "path. Nothing was changed there.") from None
        raise
    return path


def write_text_atomic(path: Path, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
