"""`make demo`: build the embedded example, then harden its ERM LeNet-5 at sigma 0.6 with the CLI.

The LeNet is used because it really degrades under drift (a wide MLP barely does; see README).
"""
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = HERE / "work"

subprocess.run([sys.executable, str(HERE / "prepare.py"), str(WORK)], check=True)
cmd = ["ftcompile", "harden", "lenet.onnx", "--train", "train.npz", "--val", "val.npz", "--test", "test.npz",
       "--sigma", "0.6", "--min-accuracy", "0.9", "--out", "lenet.hardened.onnx"]
print("$ cd", WORK, "&&", " ".join(cmd), flush=True)
code = subprocess.run([sys.executable, "-m", "ftcompile.cli", *cmd[1:]], cwd=WORK).returncode
print(f"\nreport: {WORK / 'lenet.hardened.report.md'}\nplot:   {WORK / 'lenet.hardened.sweep.png'}")
sys.exit(code)
