"""The project's line length: every tracked Python line is at most 120 characters (pyproject.toml's [tool.ruff]
line-length, so editors agree)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_LINE = 120


def tracked_python_files() -> list[Path]:
    """The repository's tracked .py files, by git; skips the test where git or the repository is not there."""
    if shutil.which("git") is None:
        pytest.skip("git is not available")
    try:
        out = subprocess.run(["git", "ls-files", "-z", "*.py"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"git ls-files failed: {exc}")
    if out.returncode != 0:
        pytest.skip(f"not a git checkout: {out.stderr.strip()}")
    return [ROOT / name for name in out.stdout.split("\0") if name and (ROOT / name).is_file()]


def test_every_tracked_python_line_within_120_characters():
    files = tracked_python_files()
    assert files, "git ls-files listed no Python files"
    long = [f"{path.relative_to(ROOT)}:{number}: {len(line)} characters"
            for path in files
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
            if len(line) > MAX_LINE]
    assert not long, f"{len(long)} lines longer than {MAX_LINE} characters:\n" + "\n".join(long)
