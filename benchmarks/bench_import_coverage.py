"""Import coverage on real architectures: torchvision's classifiers and torch.nn RNN/Transformer classifiers,
each exported by the TorchScript and the dynamo exporter, then `validate`, import parity and
`harden --trials 2 --epochs 1` at a tiny budget (random weights, 64 inputs labelled by the model itself).

Needs torchvision (`pip install torch==2.14.1 torchvision==0.29.1` here: a 5.5 GB build, so not in `make`).
Each model runs in its own process (one torch thread) with a time limit; one line per (model, exporter).
Usage: python benchmarks/bench_import_coverage.py [--models resnet18,lstm] [--out results/import_coverage.json]
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SIZE = 64  # input resolution: every architecture below accepts it, and 2 cores can pay for it

# name -> python expression building the model (torchvision as tv, nn, torch), input shape without batch
MODELS = {
    "resnet18": ("tv.resnet18(num_classes=10)", (3, SIZE, SIZE)),
    "mobilenet_v2": ("tv.mobilenet_v2(num_classes=10)", (3, SIZE, SIZE)),
    "mobilenet_v3_small": ("tv.mobilenet_v3_small(num_classes=10)", (3, SIZE, SIZE)),
    "squeezenet1_1": ("tv.squeezenet1_1(num_classes=10)", (3, SIZE, SIZE)),
    "efficientnet_b0": ("tv.efficientnet_b0(num_classes=10)", (3, SIZE, SIZE)),
    "shufflenet_v2_x0_5": ("tv.shufflenet_v2_x0_5(num_classes=10)", (3, SIZE, SIZE)),
    "regnet_y_400mf": ("tv.regnet_y_400mf(num_classes=10)", (3, SIZE, SIZE)),
    "densenet121": ("tv.densenet121(num_classes=10)", (3, SIZE, SIZE)),
    "convnext_tiny": ("tv.convnext_tiny(num_classes=10)", (3, SIZE, SIZE)),
    "vit_tiny": ("tv.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, "
                 "mlp_dim=64, num_classes=10)", (3, 32, 32)),
    "lstm": ("SeqClassifier(nn.LSTM(16, 32, batch_first=True), 32)", (12, 16)),
    "gru": ("SeqClassifier(nn.GRU(16, 32, batch_first=True, bidirectional=True), 64)", (12, 16)),
    "transformer_encoder": ("SeqClassifier(nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 2, 32, "
                            "batch_first=True), 2), 16)", (12, 16)),
}

CHILD = r'''
import io, json, sys, time, warnings, tempfile
from pathlib import Path
warnings.filterwarnings("ignore")
import numpy as np, onnx, onnxruntime as ort, torch
from torch import nn
import torchvision.models as tv
torch.set_num_threads(1)

class SeqClassifier(nn.Module):
    def __init__(self, body, width):
        super().__init__()
        self.body, self.fc = body, nn.Linear(width, 10)
    def forward(self, x):
        y = self.body(x)
        y = y[0] if isinstance(y, tuple) else y
        return self.fc(y.mean(1))

name, expr, shape, exporter, work = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4], Path(sys.argv[5])
row = {"model": name, "exporter": exporter}
torch.manual_seed(0)
model = eval(expr).eval()
with torch.no_grad():  # torchvision zero-initializes some heads (ViT): random weights, or every output is 0
    for p in model.parameters():
        if p.dim() > 1 and not p.any():
            p.normal_(0, 0.02)
x = torch.randn(2, *shape)
t = time.perf_counter()
try:
    if exporter == "dynamo":
        proto = torch.onnx.export(model, (x,), dynamo=True, verbose=False,
                                  dynamic_shapes=({0: torch.export.Dim("N", min=1, max=1024)},)).model_proto
    else:
        buf = io.BytesIO()
        torch.onnx.export(model, (x,), buf, dynamo=False, opset_version=17, input_names=["x"],
                          dynamic_axes={"x": {0: "N"}})
        proto = onnx.load_from_string(buf.getvalue())
except Exception as exc:
    row.update(stage="export", ok=False, error=f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    print(json.dumps(row)); sys.exit(0)
path = work / f"{name}-{exporter}.onnx"
onnx.save(proto, path)
row["ops"] = sorted({n.op_type for n in proto.graph.node})
xs = np.random.default_rng(0).standard_normal((64, *shape)).astype(np.float32)
ys = ort.InferenceSession(proto.SerializeToString()).run(None, {proto.graph.input[0].name: xs})[0].argmax(1)
data = work / f"{name}-{exporter}.npz"
np.savez(data, x=xs, y=ys)
from typer.testing import CliRunner
from ftcompile.cli import app
from ftcompile.frontend import import_onnx
for stage, args in (("validate", ["validate", str(path), "--data", str(data), "--samples", "3", "--quiet"]),
                    ("import", None),
                    ("harden", ["harden", str(path), "--train", str(data), "--val", str(data), "--trials", "2",
                                "--epochs", "1", "--final-epochs", "1", "--samples", "2", "--validate-samples", "2",
                                "--no-plot", "--quiet", "--out", str(work / f"{name}-{exporter}.hardened.onnx")])):
    t = time.perf_counter()
    if args is None:
        try:
            p = import_onnx(proto, check_parity=False)
            from ftcompile.frontend.parity import compare
            parity = compare(p.onnx_model, p.module, p.output)
            row["parity_rel"] = parity.rel
            code, out = (0, "") if parity.ok else (2, f"parity {parity.rel:.3g} of range")
        except Exception as exc:
            code, out = 2, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    else:
        r = CliRunner().invoke(app, args)
        code, out = r.exit_code, (r.output.strip().splitlines() or [""])[-1][:240]
    row[stage] = {"exit": code, "seconds": round(time.perf_counter() - t, 1), **({"message": out} if code else {})}
print(json.dumps(row))
'''


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--exporters", default="torchscript,dynamo")
    ap.add_argument("--timeout", type=int, default=900)
    ap.add_argument("--work", type=Path, default=HERE / "work" / "import_coverage")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "import_coverage.json")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    import torch
    import torchvision

    # rows of (model, exporter) pairs not run this time are kept from the last results
    old = json.loads(args.out.read_text())["rows"] if args.out.exists() else []
    rows = []
    env = {**os.environ, "PYTHONPATH": str(HERE.parent), "OMP_NUM_THREADS": "1"}
    for name in args.models.split(","):
        expr, shape = MODELS[name]
        for exporter in args.exporters.split(","):
            t = time.perf_counter()
            try:
                res = subprocess.run([sys.executable, "-c", CHILD, name, expr, json.dumps(shape), exporter,
                                      str(args.work)], capture_output=True, text=True, timeout=args.timeout, env=env)
                lines = [line for line in res.stdout.splitlines() if line.startswith("{")]
                row = json.loads(lines[-1]) if lines else {"model": name, "exporter": exporter, "stage": "crash",
                                                           "error": (res.stderr.strip().splitlines() or [""])[-1][:240]}
            except subprocess.TimeoutExpired:
                row = {"model": name, "exporter": exporter, "stage": "timeout", "error": f"over {args.timeout} s"}
            row["seconds"] = round(time.perf_counter() - t, 1)
            rows.append(row)
            verdict = " ".join(f"{s}={row[s]['exit']}" for s in ("validate", "import", "harden") if s in row)
            print(f"{name:22s} {exporter:11s} {verdict or row.get('stage')}  {row.get('error', '')}"
                  f"{' | '.join(row[s]['message'] for s in ('validate', 'import', 'harden') if s in row and 'message' in row[s])}"
                  f"  ({row['seconds']:.0f} s)", flush=True)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            done = {(r["model"], r["exporter"]) for r in rows}
            kept = [r for r in old if (r["model"], r["exporter"]) not in done]
            order = {name: i for i, name in enumerate(MODELS)}
            merged = sorted(kept + rows, key=lambda r: (order.get(r["model"], 99), r["exporter"] != "torchscript"))
            args.out.write_text(json.dumps({"torch": torch.__version__, "torchvision": torchvision.__version__,
                                            "input": SIZE, "rows": merged}, indent=2) + "\n")


if __name__ == "__main__":
    main()
