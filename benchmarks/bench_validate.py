"""Speed of `validate` against its floor (K clean passes of the same session) and a session per sample.

Prints ratios measured side by side in one run. Weights are random (speed does not depend on them).
Usage: python benchmarks/bench_validate.py [--samples 100] [--sizes 1000,10000] [--out results.json]
"""
import argparse
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))
from models import export, lenet5, mlp  # noqa: E402

from ftcompile.api import bind_data, open_session  # noqa: E402
from ftcompile.runtime.drift import LogNormalDrift, draw_sample  # noqa: E402
from ftcompile.runtime.validate import _score, sample_metrics  # noqa: E402
from ftcompile.runtime.metrics import accuracy  # noqa: E402


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def session_per_sample(path, data, drift, samples, batch):
    proto = onnx.load(path)
    s0 = open_session(path)
    for k in range(samples):
        drifted = draw_sample(drift, s0.weights, 0, k)
        for init in proto.graph.initializer:
            if init.name in drifted:
                init.CopyFrom(onnx.numpy_helper.from_array(drifted[init.name], init.name))
        sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        outs = [sess.run(None, feeds)[0] for feeds, _ in data.batches(batch)]
        accuracy(np.concatenate(outs), data.labels)


def serial(session, data, drift, samples, batch):
    for k in range(samples):
        _score(session, data, draw_sample(drift, session.weights, 0, k), batch, accuracy)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "validate.json")
    args = ap.parse_args()
    drift = LogNormalDrift(0.6)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, net in (("mlp-784-512-512-10", mlp()), ("lenet5", lenet5())):
            path = Path(tmp) / f"{name}.onnx"
            export(net, path)
            session = open_session(path)
            nweights = sum(w.size for w in session.weights.values())
            for n in (int(s) for s in args.sizes.split(",")):
                rng = np.random.default_rng(0)
                data = bind_data(session, (rng.random((n, 1, 28, 28), dtype=np.float32),
                                           rng.integers(0, 10, n)))
                K, B = args.samples, args.batch
                floor = timed(lambda: [_score(session, data, session.weights, B, accuracy) for _ in range(K)])
                ours = timed(lambda: sample_metrics(session, data, drift, samples=K, batch_size=B))
                ser = timed(lambda: serial(session, data, drift, K, B))
                per = timed(lambda: session_per_sample(path, data, drift, K, B))
                row = dict(model=name, weights=nweights, inputs=n, samples=K, floor_s=floor, validate_s=ours,
                           serial_draws_s=ser, session_per_sample_s=per, validate_over_floor=ours / floor,
                           serial_over_floor=ser / floor, per_sample_over_floor=per / floor)
                rows.append(row)
                print(f"{name:20s} n={n:6d} K={K}: floor {floor:7.2f}s  validate {ours:7.2f}s ({ours / floor:.2f}x)"
                      f"  serial-draws {ser:7.2f}s ({ser / floor:.2f}x)  session-per-sample {per:7.2f}s "
                      f"({per / floor:.2f}x)", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
