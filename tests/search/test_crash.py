"""Crash safety: `kill -9` mid-search loses at most the running trial; --resume redoes nothing finished."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from ftcompile.cli import app
from tests.helpers import teacher_files

ROOT = Path(__file__).resolve().parents[2]


def _trials(journal: Path) -> list[dict]:
    rows = []
    for line in journal.read_text().splitlines()[1:] if journal.exists() else []:
        try:
            rows.append(json.loads(line))
        except ValueError:  # a line cut by the kill
            pass
    return rows


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in state  # a zombie has exited


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:  # field 4 of /proc/PID/stat, after the command name
            kids.append(int(stat.parent.name))
    return kids


def test_kill_minus_nine_then_resume(tmp_path):
    model, data = teacher_files(tmp_path, n=300)
    d = np.load(data)
    np.savez(tmp_path / "train.npz", x=d["x"][:200], y=d["y"][:200])
    np.savez(tmp_path / "val.npz", x=d["x"][200:], y=d["y"][200:])
    args = [sys.executable, "-m", "ftcompile.cli", "harden", str(model), "--train", str(tmp_path / "train.npz"),
            "--val", str(tmp_path / "val.npz"), "--method", "bayesft", "--trials", "6", "--epochs", "40",
            "--final-epochs", "0", "--samples", "3", "--validate-samples", "2", "--no-plot",
            "--out", str(tmp_path / "h.onnx"), "--quiet", "--workers", "2"]
    journal = tmp_path / "h.journal.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while len(_trials(journal)) < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    workers = _children(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 10
    while any(_alive(p) for p in workers) and time.time() < deadline:
        time.sleep(0.2)
    assert workers and not any(_alive(p) for p in workers), "orphaned workers must exit with their parent"
    before = _trials(journal)
    assert 2 <= len(before) < 6, "the kill must land mid-search"
    assert not (tmp_path / "h.onnx").exists() and not list(tmp_path.glob("*.tmp*"))  # nothing half-written

    done = subprocess.run(args + ["--resume"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    after = _trials(journal)
    assert sorted(t["trial"] for t in after) == list(range(6))  # each trial once
    assert after[:len(before)] == before  # finished trials kept as they were, not redone
    assert (tmp_path / "h.onnx").exists()


def test_unwritable_output_is_refused_before_the_search(tmp_path):
    """Each case fails for root too (tests run as root here and in CI)."""
    model, data = teacher_files(tmp_path, n=100)
    (tmp_path / "plain-file").write_text("not a directory")
    cases = {tmp_path / "missing-dir" / "h.onnx": "does not exist",
             tmp_path / "plain-file" / "h.onnx": "is a file, not a directory",
             Path("/sys") / "h.onnx": "not writable"}  # sysfs refuses new files, even root's
    for out, needle in cases.items():
        r = CliRunner().invoke(app, ["harden", str(model), "--train", str(data), "--val", str(data),
                                     "--trials", "1", "--out", str(out)])
        assert r.exit_code == 2 and needle in r.output and str(out.parent) in r.output, r.output
        assert len(r.output.strip().splitlines()) == 1, r.output
        assert not list(tmp_path.glob("*.journal.jsonl"))


def test_a_journal_line_cut_by_a_crash_is_dropped_and_appends_stay_readable(tmp_path):
    from ftcompile.search.journal import Journal, TrialRecord

    path = tmp_path / "j.jsonl"
    j = Journal(path, {"a": 1}, resume=False)
    j.append(TrialRecord(0, [0.1], 0.9, 0.01, 1.0, 1000))
    with open(path, "a") as f:
        f.write('{"kind": "trial", "trial": 1, "rat')  # the kill landed mid-write
    resumed = Journal(path, {"a": 1}, resume=True)
    assert [t.trial for t in resumed.trials] == [0]
    resumed.append(TrialRecord(1, [0.2], 0.8, 0.01, 1.0, 1001))
    assert [t.trial for t in Journal(path, {"a": 1}, resume=True).trials] == [0, 1]


def test_disk_full_is_caught_before_the_search_and_on_write(tmp_path, monkeypatch):
    import errno
    import shutil
    from collections import namedtuple

    from ftcompile.errors import OutputError
    from ftcompile.fileio import write_bytes_atomic

    model, data = teacher_files(tmp_path, n=100)
    usage = namedtuple("usage", "total used free")
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 1000, 1000))
    r = CliRunner().invoke(app, ["harden", str(model), "--train", str(data), "--val", str(data), "--trials", "1",
                                 "--out", str(tmp_path / "h.onnx")])
    assert r.exit_code == 2 and "MiB free" in r.output and not (tmp_path / "h.journal.jsonl").exists()
    monkeypatch.setattr(shutil, "disk_usage", real)
    (tmp_path / "keep.json").write_text("old")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    try:
        write_bytes_atomic(tmp_path / "keep.json", b"new")
        raise AssertionError("expected OutputError")
    except OutputError as exc:
        assert "No space left" in str(exc)
    assert (tmp_path / "keep.json").read_text() == "old" and not list(tmp_path.glob(".keep.json.*"))


def test_atomic_writes_get_the_permissions_of_a_plain_write(tmp_path, monkeypatch):
    from ftcompile import fileio

    monkeypatch.setattr(fileio, "UMASK", 0o022)  # read once at import; fixed here so the expectation is known
    fileio.write_text_atomic(tmp_path / "new.json", "{}")
    assert (tmp_path / "new.json").stat().st_mode & 0o777 == 0o644  # mkstemp alone gives 0600
    (tmp_path / "kept.json").write_text("old")
    os.chmod(tmp_path / "kept.json", 0o640)
    fileio.write_text_atomic(tmp_path / "kept.json", "new")
    assert (tmp_path / "kept.json").stat().st_mode & 0o777 == 0o640 and (tmp_path / "kept.json").read_text() == "new"
