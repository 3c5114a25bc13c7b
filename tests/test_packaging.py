"""The wheel a CI gate installs: built from this tree, installed into a fresh virtual environment that holds only what
its runtime requirements name (transitively, no extras), and run as `ftcompile validate` with a gate.

Offline and fast: the wheel is built without build isolation, and the fresh environment gets the distributions it
needs linked in from the environment running the tests instead of downloaded. A dependency the runtime imports but
pyproject.toml does not name is then missing there, and the gate's run fails; torch, scipy, matplotlib and
pycocotools are not there at all.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.helpers import teacher_files

ROOT = Path(__file__).resolve().parent.parent
# what runs in the fresh environment sees none of this one (PYTHONPATH may hold the source tree and its egg-info)
CLEAN_ENV = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "OMP_NUM_THREADS": "1"}


def build_wheel(out: Path) -> Path:
    """The wheel of a copy of the tree (the build writes build/ and *.egg-info beside its sources)."""
    src = out / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "ftcompile", src / "ftcompile", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
                    str(src)], check=True, capture_output=True)
    return next(out.glob("ftcompile-*.whl"))


def runtime_requirements(wheel: Path) -> list[Requirement]:
    """The wheel's Requires-Dist without the extras'."""
    with zipfile.ZipFile(wheel) as z:
        meta = Parser().parsestr(z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode())
    reqs = [Requirement(r) for r in meta.get_all("Requires-Dist")]
    return [r for r in reqs if r.marker is None or r.marker.evaluate({"extra": ""})]


def closure(requirements: list[Requirement]) -> dict[str, metadata.Distribution]:
    """Every installed distribution the requirements need, transitively (markers evaluated here)."""
    found: dict[str, metadata.Distribution] = {}
    done: set[tuple[str, str]] = set()  # (distribution, extra) whose requirements are queued
    todo = list(requirements)
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        try:
            dist = found.get(name) or metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            pytest.fail(f"{req} is a runtime requirement but is not installed in the test environment")
        found[name] = dist
        for extra in {"", *req.extras} - {e for n, e in done if n == name}:
            done.add((name, extra))
            todo += [sub for sub in map(Requirement, dist.requires or [])
                     if (sub.marker.evaluate({"extra": extra}) if sub.marker else extra == "")]
    return found


def fresh_env(path: Path, dists: dict[str, metadata.Distribution]) -> Path:
    """A virtual environment without pip whose site-packages links in exactly ``dists`` (each top-level file or
    folder its RECORD lists); returns its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True, env=CLEAN_ENV).stdout.strip())
    for name, dist in dists.items():
        assert dist.files, f"{name} lists no files (no RECORD); cannot link it"
        for top in {f.parts[0] for f in dist.files if f.parts[0] not in ("..", "__pycache__")}:
            source = Path(dist.locate_file(top))
            if source.exists() and not (site / top).exists():
                (site / top).symlink_to(source)
    return python


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    wheel = build_wheel(tmp)
    python = fresh_env(tmp / "venv", closure(runtime_requirements(wheel)))
    # pip of this environment installs into the fresh one (pip >= 22.3); nothing is fetched
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index",
                    str(wheel)], check=True, capture_output=True, env=CLEAN_ENV)
    return python, tmp


def test_the_wheel_alone_runs_a_gate_without_torch(installed):
    python, tmp = installed
    absent = subprocess.run([python, "-c", "import importlib.util as u; print([m for m in ('torch', 'scipy', "
                             "'matplotlib', 'pycocotools') if u.find_spec(m)])"],
                            capture_output=True, text=True, env=CLEAN_ENV)
    assert absent.stdout.strip() == "[]", absent.stderr
    model, data = teacher_files(tmp)
    ftcompile = python.parent / "ftcompile"

    def gate(bar: str) -> subprocess.CompletedProcess:
        return subprocess.run([ftcompile, "validate", model, "--data", data, "--drift", "lognormal:0.3", "--samples",
                               "5", "--min-accuracy", bar], capture_output=True, text=True, env=CLEAN_ENV, cwd=tmp)

    passed, failed = gate("0.5"), gate("0.999")  # clean accuracy is 1; lognormal 0.3 costs a few points
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert failed.returncode == 1, failed.stdout + failed.stderr
    version = subprocess.run([python, "-m", "ftcompile", "--version"], capture_output=True, text=True, env=CLEAN_ENV)
    assert version.returncode == 0 and version.stdout.split() == ["ftcompile", metadata_version(python)]


def metadata_version(python: Path) -> str:
    """The version the installed wheel declares (its dist-info), which must be what --version prints."""
    return subprocess.run([python, "-c", "from importlib.metadata import version; print(version('ftcompile'))"],
                          capture_output=True, text=True, check=True, env=CLEAN_ENV).stdout.strip()


@pytest.mark.parametrize("module,extra,call", [
    ("matplotlib", "plot", "from ftcompile.runtime.plot import plot_curves; plot_curves([], 'x.png')"),
    ("pycocotools", "detection", "from ftcompile.runtime.tasks import MaskOverlap; import numpy as np; "
                                 "MaskOverlap().per_example(np.ones((1, 2, 2), int), np.ones((1, 2, 2), int))"),
])
def test_a_missing_extra_is_named_in_one_line(module, extra, call):
    # the module made unimportable in a fresh interpreter (None in sys.modules: ImportError on import)
    code = (f"import sys; sys.modules[{module!r}] = None\nfrom ftcompile.errors import FtcompileError\n"
            f"try:\n    {call}\nexcept FtcompileError as e:\n    print(e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.stdout.count("\n") == 1 and f"pip install 'ftcompile[{extra}]'" in out.stdout, out.stdout + out.stderr
