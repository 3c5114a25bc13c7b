"""Import coverage on real architectures: torchvision's classifiers and segmenters (FCN, DeepLabV3, LR-ASPP), a
detector backbone with FPN, a ViT, torch.nn RNN/Transformer classifiers and a BERT-style encoder with attention
masks (random weights from a configuration), each exported by the TorchScript and the dynamo exporter, then
`validate`, import parity and `harden --trials 2 --epochs 1` at a tiny budget (64 inputs labelled by the model
itself: classes, or per-pixel masks for the segmenters).

Needs torchvision (`pip install torch==2.14.1 torchvision==0.29.1` in a venv of its own: a 5.5 GB build, so not in
`make`). Each model runs in its own process (one torch thread) with a time limit; one line per (model, exporter).
Usage: python benchmarks/bench_import_coverage.py [--models resnet18,lstm] [--out results/import_coverage.json]
       python benchmarks/bench_import_coverage.py --table docs/import_coverage.md   (the Markdown table, from the JSON)
"""
import argparse
import json
import re
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SIZE = 64  # input resolution: every architecture below accepts it, and 2 cores can pay for it

# name -> python expression building the model (torchvision as tv, nn, torch and the classes of CHILD), input
# shape without batch; segmenters and the token models are listed in SEGMENTERS and TOKENS
SEGMENTERS = {"fcn_resnet50", "deeplabv3_mobilenet_v3", "lraspp_mobilenet_v3"}
TOKENS = {"bert": 1, "bert_mask_input": 2}  # token-id models: how many inputs (ids, or ids and attention mask)
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
    "fcn_resnet50": ("Segmenter(seg.fcn_resnet50(weights=None, weights_backbone=None, num_classes=3, aux_loss=False))",
                     (3, SIZE, SIZE)),
    "deeplabv3_mobilenet_v3": ("Segmenter(seg.deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, "
                               "num_classes=3, aux_loss=False))", (3, SIZE, SIZE)),
    "lraspp_mobilenet_v3": ("Segmenter(seg.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, "
                            "num_classes=3))", (3, SIZE, SIZE)),
    "fpn_resnet18": ("FPNClassifier()", (3, SIZE, SIZE)),
    "bert": ("Bert(dict(vocab=100, hidden=32, layers=2, heads=4, intermediate=64, max_len=16, classes=10))", (16,)),
    "bert_mask_input": ("Bert(dict(vocab=100, hidden=32, layers=2, heads=4, intermediate=64, max_len=16, classes=10), "
                        "mask_input=True)", (16,)),
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
import torchvision.models.segmentation as seg
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
torch.set_num_threads(1)

class SeqClassifier(nn.Module):
    def __init__(self, body, width):
        super().__init__()
        self.body, self.fc = body, nn.Linear(width, 10)
    def forward(self, x):
        y = self.body(x)
        y = y[0] if isinstance(y, tuple) else y
        return self.fc(y.mean(1))

class Segmenter(nn.Module):
    """torchvision's segmenters return {"out": (N, C, H, W)}; ONNX wants the tensor."""
    def __init__(self, net):
        super().__init__()
        self.net = net
    def forward(self, x):
        return self.net(x)["out"]

class FPNClassifier(nn.Module):
    """A detector's backbone (ResNet-18 + FPN + its extra max-pool level, torchvision's resnet_fpn_backbone) with a
    classification head over the pooled pyramid levels, so `harden`'s classification task can train it."""
    def __init__(self):
        super().__init__()
        self.backbone = resnet_fpn_backbone(backbone_name="resnet18", weights=None, trainable_layers=5)
        self.fc = nn.Linear(256 * 5, 10)
    def forward(self, x):
        return self.fc(torch.cat([f.mean((2, 3)) for f in self.backbone(x).values()], 1))

class Bert(nn.Module):
    """A BERT-style encoder from a configuration (random weights): token + position embeddings, layer norm,
    post-norm GELU encoder layers that ignore padding (id 0) through a key-padding attention mask, a tanh pooler on
    the first token, a classifier. ``mask_input``: the attention mask is a second input (1 = attend), as exported
    BERTs take it; otherwise it is computed from the ids."""
    def __init__(self, cfg, mask_input=False):
        super().__init__()
        h = cfg["hidden"]
        self.mask_input = mask_input
        self.tokens, self.positions = nn.Embedding(cfg["vocab"], h), nn.Embedding(cfg["max_len"], h)
        self.norm = nn.LayerNorm(h)
        layer = nn.TransformerEncoderLayer(h, cfg["heads"], cfg["intermediate"], dropout=0.0, activation="gelu",
                                           batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg["layers"], enable_nested_tensor=False)
        self.pooler, self.classifier = nn.Linear(h, h), nn.Linear(h, cfg["classes"])
    def forward(self, ids, mask=None):
        pos = torch.arange(ids.shape[1], device=ids.device).unsqueeze(0)
        h = self.norm(self.tokens(ids) + self.positions(pos))
        padding = (mask == 0) if self.mask_input else (ids == 0)
        h = self.encoder(h, src_key_padding_mask=padding)
        return self.classifier(torch.tanh(self.pooler(h[:, 0])))

name, expr, shape, exporter, work = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4], Path(sys.argv[5])
task, inputs_n = sys.argv[6], int(sys.argv[7])
row = {"model": name, "exporter": exporter, "task": task, "inputs": inputs_n}
torch.manual_seed(0)
model = eval(expr).eval()
with torch.no_grad():  # torchvision zero-initializes some heads (ViT): random weights, or every output is 0
    for p in model.parameters():
        if p.dim() > 1 and not p.any():
            p.normal_(0, 0.02)

def examples(n, seed):
    """n inputs: images, or token ids (1..99, then padding 0 from a random length on) and their attention mask."""
    rng = np.random.default_rng(seed)
    if task != "tokens":
        return [rng.standard_normal((n, *shape)).astype(np.float32)]
    ids = rng.integers(1, 100, (n, *shape)).astype(np.int64)
    lengths = rng.integers(2, shape[0] + 1, n)
    mask = (np.arange(shape[0])[None, :] < lengths[:, None]).astype(np.int64)
    return [ids * mask, mask][:inputs_n]

x = tuple(torch.from_numpy(a) for a in examples(2, 1))
names = ["x"] if inputs_n == 1 else ["ids", "mask"]
t = time.perf_counter()
try:
    if exporter == "dynamo":
        batch = torch.export.Dim("N", min=1, max=1024)
        proto = torch.onnx.export(model, x, dynamo=True, verbose=False, input_names=names,
                                  dynamic_shapes=tuple({0: batch} for _ in x)).model_proto
    else:
        buf = io.BytesIO()
        torch.onnx.export(model, x, buf, dynamo=False, opset_version=17, input_names=names,
                          dynamic_axes={n: {0: "N"} for n in names})
        proto = onnx.load_from_string(buf.getvalue())
except Exception as exc:
    row.update(stage="export", ok=False, error=f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    print(json.dumps(row)); sys.exit(0)
path = work / f"{name}-{exporter}.onnx"
onnx.save(proto, path)
row["ops"] = sorted({n.op_type for n in proto.graph.node})
feeds = dict(zip([i.name for i in proto.graph.input], examples(64, 0)))
scores = ort.InferenceSession(proto.SerializeToString()).run(None, feeds)[0]
data = work / f"{name}-{exporter}.npz"
labels = {"masks": scores.argmax(1).astype(np.int64)} if task == "segmentation" else {"y": scores.argmax(1)}
np.savez(data, **({"x": feeds[names[0]]} if inputs_n == 1 else feeds), **labels)
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


# what a failure's message means, where it is not the importer's (the table's footnotes)
EXPLAINED = {
    "but the model has 2 classes": "the TorchScript exporter leaves the segmenter's output dims symbolic (they come "
                                   "out of a Resize), and `validate`/`harden` then read an unknown class count as 2 "
                                   "(ftcompile/labels.py check_masks): ftcompile's runtime, not the importer (parity "
                                   "column) nor the exporter",
    "harden supports single-input": "`harden` takes single-input models today (api.py); import and `validate` take "
                                    "the ids and the attention mask",
}


def render_table(results: dict) -> str:
    """The Markdown table of a results file: per model and exporter, each stage's exit code (0 = passed)."""
    lines = ["# Import coverage on model families", "",
             "<!-- Generated by `python benchmarks/bench_import_coverage.py --table docs/import_coverage.md` from "
             "benchmarks/results/import_coverage.json; do not edit. -->", "",
             f"torch {results['torch']}, torchvision {results['torchvision']}, {results['input']} px images, random "
             "weights, 64 examples labelled by the model itself. Each cell is the stage's exit code (0 = passed: the "
             "import within 1e-4 of onnxruntime's range, `validate`, `harden --trials 2 --epochs 1 --final-epochs 1`); "
             "`export` failures are the exporter's own, before ftcompile sees a model.", "",
             "| model | task | exporter | export | import parity | validate | harden | seconds | note |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results["rows"]:
        def cell(stage):
            return str(r[stage]["exit"]) if stage in r else "-"
        parity = f"{cell('import')} ({r['parity_rel']:.1e})" if "parity_rel" in r else cell("import")
        by_message: dict[str, list] = {}  # one note per message, naming the stages that gave it
        for stage in ("validate", "import", "harden"):
            if stage in r and "message" in r[stage]:
                by_message.setdefault(re.sub(r"[^ ]*/import_coverage/", "", r[stage]["message"]), []).append(stage)
        notes = [r.get("error", "")] + [f"{', '.join(stages)}: {m}" for m, stages in by_message.items()]
        notes += [why for text, why in EXPLAINED.items() if any(text in n for n in notes)]
        exported = "fails" if r.get("stage") == "export" else r.get("stage", "0")
        lines.append(f"| {r['model']} | {r.get('task', 'classification')} | {r['exporter']} | {exported} | {parity} | "
                     f"{cell('validate')} | {cell('harden')} | {r.get('seconds', '')} | "
                     f"{'; '.join(n for n in notes if n).replace('|', '/')[:600]} |")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--table", type=Path, help="write the Markdown table of --out's results here and stop")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--exporters", default="torchscript,dynamo")
    ap.add_argument("--timeout", type=int, default=900)
    ap.add_argument("--work", type=Path, default=HERE / "work" / "import_coverage")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "import_coverage.json")
    args = ap.parse_args()
    if args.table:
        args.table.write_text(render_table(json.loads(args.out.read_text())))
        return
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
                task = "segmentation" if name in SEGMENTERS else "tokens" if name in TOKENS else "classification"
                res = subprocess.run([sys.executable, "-c", CHILD, name, expr, json.dumps(shape), exporter,
                                      str(args.work), task, str(TOKENS.get(name, 1))], capture_output=True, text=True,
                                     timeout=args.timeout, env=env)
                lines = [line for line in res.stdout.splitlines() if line.startswith("{")]
                row = json.loads(lines[-1]) if lines else {"model": name, "exporter": exporter, "stage": "crash",
                                                           "error": (res.stderr.strip().splitlines() or [""])[-1][:240]}
            except subprocess.TimeoutExpired:
                row = {"model": name, "exporter": exporter, "stage": "timeout", "error": f"over {args.timeout} s"}
            row["seconds"] = round(time.perf_counter() - t, 1)
            rows.append(row)
            verdict = " ".join(f"{s}={row[s]['exit']}" for s in ("validate", "import", "harden") if s in row)
            messages = " | ".join(row[s]["message"] for s in ("validate", "import", "harden")
                                  if s in row and "message" in row[s])
            print(f"{name:22s} {exporter:11s} {verdict or row.get('stage')}  {row.get('error', '')}{messages}"
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
