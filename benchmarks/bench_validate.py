"""Speed of `validate` against its floor (K clean passes of the same session), measured side by side.

Columns, all on the same session and data in one run (each after a warm-up pass):
- floor: K clean passes (the weights never change);
- validate: `sample_metrics` as shipped (sample k+1 drawn in a background thread while onnxruntime runs k);
- serial: draw, then run, in turn (what validate did before the prefetch);
- draws: the K draws alone (what the noise costs without inference);
- session-per-sample: a new onnxruntime session with the drifted initializers each sample (the naive way).
Targets (issue 11): validate <= 1.4x floor at 1,000 inputs and <= 1.15x at 10,000, for the MLP, the LeNet
and a ResNet-20 (CIFAR size). Weights are random (speed does not depend on them).
Usage: python benchmarks/bench_validate.py [--samples 100] [--sizes 1000,10000] [--out results.json]
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))
from models import export, lenet5, mlp, resnet20  # noqa: E402

from ftcompile.api import bind_data, open_session  # noqa: E402
from ftcompile.runtime.drift import LogNormalDrift, draw_sample  # noqa: E402
from ftcompile.runtime.metrics import accuracy  # noqa: E402
from ftcompile.runtime.validate import _score, sample_metrics  # noqa: E402

# ResNet-20 passes cost about 1 s per 1,000 images here: fewer samples, the same ratios
NETS = {"mlp-784-512-512-10": (mlp, (1, 28, 28), 1.0), "lenet5": (lenet5, (1, 28, 28), 1.0),
        "resnet20": (resnet20, (3, 32, 32), 0.1)}


def timed(fn) -> float:
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
    ap.add_argument("--models", default=",".join(NETS))
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "validate.json")
    args = ap.parse_args()
    drift = LogNormalDrift(0.6)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            factory, shape, share = NETS[name]
            path = Path(tmp) / f"{name}.onnx"
            export(factory(), path, shape=(1, *shape))
            session = open_session(path)
            nweights = sum(w.size for w in session.weights.values())
            for n in (int(s) for s in args.sizes.split(",")):
                rng = np.random.default_rng(0)
                data = bind_data(session, (rng.random((n, *shape), dtype=np.float32), rng.integers(0, 10, n)))
                K, B = max(3, round(args.samples * share * (1000 / n if name == "resnet20" else 1))), args.batch
                _score(session, data, session.weights, B, accuracy)  # warm-up
                # interleaved rounds: a machine that speeds up or slows down mid-run hits every column alike
                rounds = min(K, 5)
                parts = {"floor": [], "validate": [], "serial": [], "draws": []}
                for r in range(rounds):
                    k = K // rounds
                    parts["floor"].append(timed(lambda: [_score(session, data, session.weights, B, accuracy)
                                                         for _ in range(k)]))
                    parts["validate"].append(timed(lambda: sample_metrics(session, data, drift, samples=k,
                                                                          batch_size=B)))
                    parts["serial"].append(timed(lambda: serial(session, data, drift, k, B)))
                    parts["draws"].append(timed(lambda: [draw_sample(drift, session.weights, 0, j) for j in range(k)]))
                floor, ours, ser, draws = (sum(parts[c]) for c in ("floor", "validate", "serial", "draws"))
                spread = float(np.std([v / f for v, f in zip(parts["validate"], parts["floor"])]))
                per = timed(lambda: session_per_sample(path, data, drift, K, B)) if name != "resnet20" else None
                row = dict(model=name, weights=nweights, inputs=n, samples=K, floor_s=floor, validate_s=ours,
                           serial_s=ser, draws_s=draws, session_per_sample_s=per, validate_over_floor=ours / floor,
                           serial_over_floor=ser / floor, draws_over_floor=draws / floor,
                           per_sample_over_floor=None if per is None else per / floor,
                           validate_ratio_spread=spread, target=1.4 if n <= 1000 else 1.15)
                row["met"] = row["validate_over_floor"] <= row["target"]
                rows.append(row)
                print(f"{name:20s} n={n:6d} K={K:3d}: floor {floor:7.2f}s  validate {ours / floor:.2f}x "
                      f"(+-{spread:.2f} over rounds)  "
                      f"serial {ser / floor:.2f}x  draws {draws / floor:.2f}x  "
                      + (f"session-per-sample {per / floor:.2f}x" if per else "") +
                      f"  target {row['target']}x {'met' if row['met'] else 'MISSED'}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
