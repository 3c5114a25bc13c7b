"""A ReRAM toolchain calling ftcompile from Python: harden a model, rank its layers, and hand a crossbar
mapper every layer's weights with their drift-validated statistics.

Writes WORK/crossbar/weights.npz (one array per drifting tensor) and WORK/crossbar/manifest.json (per tensor:
the layer, op, role, shape, value range and the layer's drift sensitivity; for the model: the drift, the
searched dropout rates, the sign-off statistics and the verdict), all through the public API. Dropout is the
identity at inference: the mapper programs the weights as they are.

Usage: python examples/toolchain.py [--work DIR] [--sigma 0.6] [--trials 8] [--drift SPEC]
Runs on the embedded MNIST example (built on first use) in a few minutes on 2 cores.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "mnist_lenet"))
from prepare import main as prepare  # noqa: E402

import ftcompile  # noqa: E402
from ftcompile.fileio import write_bytes_atomic, write_text_atomic  # noqa: E402
from ftcompile.runtime import DriftSession  # noqa: E402
from ftcompile.search.harden import HardenConfig  # noqa: E402


def export_for_mapper(hardened: Path, result, sensitivity, out: Path) -> Path:
    """One npz of weight tensors and a JSON manifest a crossbar mapper can read without ftcompile."""
    session = DriftSession(hardened)  # the runtime's view: exactly the tensors that drift on the crossbar
    by_layer = {row.layer: row for row in sensitivity.layers}
    tensors, arrays = [], {}
    for i, target in enumerate(session.targets):
        w = session.weights[target.name]
        key = f"t{i:03d}"
        arrays[key] = w
        layer = by_layer[target.node]
        tensors.append({
            "key": key, "name": target.name, "layer": target.node, "op": target.op, "role": target.role,
            "shape": list(w.shape), "dtype": str(w.dtype), "abs_max": float(np.abs(w).max()),
            "min": float(w.min()), "max": float(w.max()),
            "sensitivity": {"mean": layer.mean, "drift_ci": [layer.drift_ci_low, layer.drift_ci_high],
                            "drop": layer.drop},
        })
    out.mkdir(parents=True, exist_ok=True)
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_bytes_atomic(out / "weights.npz", buf.getvalue())
    s = result.after.stats
    manifest = {
        "schema": "ftcompile.crossbar-manifest/1", "model": str(hardened), "model_sha256": result.after.model_sha256,
        "drift": result.after.drift, "verdict": result.verdict,
        "signoff": {"clean": result.after.clean, "mean": s.mean, "total_ci": [s.total_ci_low, s.total_ci_high],
                    "p5": s.p5, "samples": result.after.samples, "examples": result.after.examples},
        "dropout_rates": dict(zip(result.sites, result.rates)), "most_sensitive_layer": sensitivity.layers[0].layer,
        "tensors": tensors,
    }
    write_text_atomic(out / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    return out / "manifest.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=HERE / "mnist_lenet" / "work")
    ap.add_argument("--sigma", type=float, default=0.6)
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--drift", default=None, help="drift spec (default lognormal at --sigma)")
    args = ap.parse_args()
    prepare(args.work)
    w = args.work
    cfg = HardenConfig(sigma=args.sigma, trials=args.trials, epochs=2, final_epochs=8, drift=args.drift)
    result = ftcompile.harden(w / "lenet.onnx", w / "train.npz", w / "val.npz", test=w / "test.npz",
                              out=w / "toolchain.hardened.onnx", config=cfg, gate=ftcompile.Gate(min_accuracy=0.9),
                              plot=False, on_stage=lambda s: print(f"{s}...", flush=True))
    print(f"hardened: {100 * result.before.stats.mean:.2f}% -> {100 * result.after.stats.mean:.2f}% under "
          f"{result.after.drift} ({result.verdict})")
    sensitivity = ftcompile.analyze(result.out, w / "val.npz", drift=result.after.drift, samples=20)
    for row in sensitivity.layers:
        print(f"  {row.layer:12s} drop {100 * row.drop:5.2f} points (only this layer drifted)")
    manifest = export_for_mapper(result.out, result, sensitivity, w / "crossbar")
    print(f"wrote {manifest} and {manifest.with_name('weights.npz')}")


if __name__ == "__main__":
    main()
