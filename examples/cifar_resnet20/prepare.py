"""ResNet-20 on CIFAR-10 (He et al. 2016, the CIFAR variant): the ERM model the search benchmarks harden.

3 stages x 3 basic blocks, 16/32/64 channels, BatchNorm, identity shortcuts (option A: subsample and zero-pad
the new channels), 0.27 M parameters, 19 dropout sites once imported.
Data (from --data, default ../shared/data, see its SOURCES.md): the 20,000-image training subset split
(seed 0) into 18,000 train / 2,000 val; all 10,000 test images. Training: SGD (momentum 0.9, Nesterov,
weight decay 5e-4), batch 128, learning rate 0.1 with cosine decay, random crop (padding 4) and horizontal flip.
Writes the normalized splits to --work and the ERM model to benchmarks/models/resnet20_cifar10.onnx
(kept in the repository so that benchmarks never retrain it), with its training log beside it. That model is
the 50-epoch fp32 one (82.78%); `--epochs 160 --model benchmarks/models/resnet20_cifar10_e160.onnx` made the
160-epoch bf16 one (84.08%, 55 minutes on 2 threads here).
`--net preact18 --width 16` trains PreAct-ResNet-18 at a quarter of its width instead (the same recipe);
`--cutout 16` adds Cutout: `--epochs 160 --threads 1 --cutout 16 --model .../resnet20_cifar10_e160_cutout.onnx`
made the 85.73% ResNet-20 (116 minutes) and `--net preact18 --width 16 --epochs 120 --threads 1 --cutout 16` the
84.88% PreAct-18 (78 minutes), each on one thread beside the other.
Usage: python examples/cifar_resnet20/prepare.py [--epochs 50] [--threads 2] [--data DIR] [--work DIR]
       [--net resnet20|preact18] [--width 16] [--model PATH] [--fp32] [--cutout 16]
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))
from examples.data_folder import DEFAULT, require  # noqa: E402
from datasets import example  # noqa: E402
from models import export, preact_resnet18, resnet20  # noqa: E402

MODEL = ROOT / "benchmarks" / "models" / "resnet20_cifar10.onnx"
normalize = example("cifar_cnn").normalize  # the same per-channel normalization as the CIFAR CNN example


def augment(xb: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random crop with padding 4 and horizontal flip, per image."""
    n = len(xb)
    padded = F.pad(xb, (4, 4, 4, 4))
    dev = xb.device  # the draws stay on the (CPU) generator; the indices go where the images are
    dx, dy = torch.randint(0, 9, (2, n), generator=gen).to(dev)
    rows = (dy[:, None] + torch.arange(32, device=dev))[:, :, None].expand(n, 32, 32)
    cols = (dx[:, None] + torch.arange(32, device=dev))[:, None, :].expand(n, 32, 32)
    idx = torch.arange(n, device=dev)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[idx, rows, cols].permute(0, 3, 1, 2)
    flip = (torch.rand(n, generator=gen) < 0.5).to(dev)
    out[flip] = out[flip].flip(-1)
    return out


def cutout(xb: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """Cutout (DeVries & Taylor 2017): one ``size`` x ``size`` square per image set to 0 (the per-channel mean
    after normalization), its centre uniform over the image so that it may hang over an edge."""
    n, _, h, w = xb.shape
    dev = xb.device

    def inside(length: int) -> torch.Tensor:  # (n, length): which rows (or columns) the square covers
        start = torch.randint(0, length, (n,), generator=gen).to(dev) - size // 2
        pos = torch.arange(length, device=dev)[None]
        return (pos >= start[:, None]) & (pos < start[:, None] + size)

    rows, cols = inside(h), inside(w)
    return xb * ~(rows[:, None, :, None] & cols[:, None, None, :])


def train(x: np.ndarray, y: np.ndarray, epochs: int, log: list, *, net: torch.nn.Module | None = None,
          device: str = "cpu", batch: int = 128, lr: float = 0.1, optimizer: str = "sgd",
          bf16: bool = True, cutout_size: int = 0) -> torch.nn.Module:
    """The CIFAR ERM recipe (ResNet-20 unless ``net``): one-cycle SGD (Nesterov, wd 5e-4) or Adam, crop + flip,
    bf16 autocast (benchmarks/bench_gpu.py trains its networks with it too; on a CPU with AVX512-BF16 it halves
    a ResNet-20 step, 257 -> 138 ms at batch 128 on 2 threads here), Cutout of ``cutout_size`` after crop + flip
    when it is not 0. Returns the net on the CPU in fp32."""
    torch.manual_seed(0)
    net = (resnet20() if net is None else net).to(device)
    xt, yt = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    opt = (torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
           if optimizer == "sgd" else torch.optim.Adam(net.parameters(), lr=lr))
    steps = epochs * -(-len(x) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.15, anneal_strategy="cos")
    gen = torch.Generator().manual_seed(0)
    for epoch in range(epochs):
        net.train()
        t0, total, correct = time.perf_counter(), 0.0, 0
        for idx in torch.randperm(len(x), generator=gen).split(batch):
            idx = idx.to(device)
            xb, yb = augment(xt[idx], gen), yt[idx]
            if cutout_size:
                xb = cutout(xb, cutout_size, gen)
            with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
                out = net(xb)
                loss = F.cross_entropy(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
            correct += (out.argmax(1) == yb).sum().item()
        log.append({"epoch": epoch, "loss": total / len(x), "train_acc": correct / len(x),
                    "seconds": time.perf_counter() - t0})
        print(json.dumps(log[-1]), flush=True)
    return net.cpu().eval()


NETS = {"resnet20": lambda width: resnet20(), "preact18": lambda width: preact_resnet18(width=width)}


def main(data: Path, work: Path, epochs: int, threads: int, model: Path, bf16: bool, net_name: str = "resnet20",
         width: int = 16, cutout_size: int = 0) -> None:
    work.mkdir(parents=True, exist_ok=True)
    require(data, "cifar10_train20k.npz", "cifar10_test.npz")  # x uint8 NHWC, y int64
    files = {name: data / f"cifar10_{name}.npz" for name in ("train20k", "test")}
    train_set, test = np.load(files["train20k"]), np.load(files["test"])
    order = np.random.default_rng(0).permutation(len(train_set["y"]))
    x, y = normalize(train_set["x"]), train_set["y"].astype(np.int64)
    np.savez(work / "train.npz", x=x[order[:18000]], y=y[order[:18000]])
    np.savez(work / "val.npz", x=x[order[18000:]], y=y[order[18000:]])
    np.savez(work / "test.npz", x=normalize(test["x"]), y=test["y"].astype(np.int64))
    if model.exists():
        print(f"{model} exists; wrote the splits only")
        return
    torch.set_num_threads(threads)
    log: list = []
    t0 = time.perf_counter()
    net = train(x[order[:18000]], y[order[:18000]], epochs, log, net=NETS[net_name](width), bf16=bf16,
                cutout_size=cutout_size)
    minutes = (time.perf_counter() - t0) / 60
    model.parent.mkdir(parents=True, exist_ok=True)
    export(net, model, shape=(1, 3, 32, 32))
    with torch.no_grad():
        xt, yt = torch.from_numpy(normalize(test["x"])), torch.from_numpy(test["y"])
        acc = float(torch.cat([net(b).argmax(1) for b in xt.split(1000)]).eq(yt).float().mean())
    model.with_suffix(".json").write_text(json.dumps(
        {"net": net_name, "width": width if net_name != "resnet20" else 16, "epochs": epochs, "threads": threads,
         "bf16": bf16, "cutout": cutout_size, "minutes": minutes, "test_accuracy": acc, "log": log,
         "params": sum(p.numel() for p in net.parameters())}, indent=2))
    print(f"wrote {model}: test accuracy {100 * acc:.2f}% on 10,000 CIFAR-10 test images")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=DEFAULT)
    ap.add_argument("--work", type=Path, default=HERE / "work")
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--net", choices=sorted(NETS), default="resnet20")
    ap.add_argument("--width", type=int, default=16, help="first-stage channels of preact18 (64 in the paper)")
    ap.add_argument("--model", type=Path, default=None,
                    help="where the ERM model goes (kept if it exists); default benchmarks/models/<net>_cifar10.onnx")
    ap.add_argument("--cutout", type=int, default=0,
                    help="Cutout square side in pixels (16 in DeVries & Taylor); 0: off")
    ap.add_argument("--fp32", action="store_true", help="train in fp32 (bf16 autocast is the default)")
    a = ap.parse_args()
    default = MODEL if a.net == "resnet20" else MODEL.with_name(f"{a.net}w{a.width}_cifar10.onnx")
    main(a.data, a.work, a.epochs, a.threads, a.model or default, not a.fp32, a.net, a.width, a.cutout)
