"""PennFudan pedestrians as detection: the CenterNet of ``detector.py`` trained from scratch (ERM).

Data (from --data, default ../shared/data/pennfudan, see docs/data.md; never copied into the project): the 170
images resized to 128 x 128 (bilinear, aspect not kept), one box per pedestrian from its instance mask (the
tightest box around the mask's pixels, scaled with the image). Split: the U-Net example's (seed 0 over the
sorted names): 120 train / 25 val / 25 test, written to work/split.json. The training set written for harden
holds each image and its mirror (240); the ERM training below adds random crops and brightness jitter.
Writes work/{train,val,test}.npz (x, boxes, labels, count: ftcompile's detection layout), work/detector.pt (a
state dict; ``detector:erm`` loads it) and work/detector.log.json.
Usage: python examples/pennfudan_det/prepare.py [--data DIR] [--epochs 150] [--threads 1]
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))
from examples.data_folder import DEFAULT, require  # noqa: E402
from examples.pennfudan_det.detector import CenterNet  # noqa: E402
from examples.pennfudan_unet.prepare import MEAN, STD  # noqa: E402

SIZE, K = 128, 8


def load(data: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    from PIL import Image

    names = sorted(p.stem for p in (require(data, "PNGImages", "PedMasks") / "PNGImages").glob("*.jpg"))
    if not names:
        raise SystemExit(f"error: no images (*.jpg) in {data}/PNGImages; give --data DIR (docs/data.md).")
    xs, boxes, count = [], np.zeros((len(names), K, 4), np.float32), np.zeros(len(names), np.int64)
    for i, name in enumerate(names):
        img = Image.open(data / "PNGImages" / f"{name}.jpg").convert("RGB")
        sx, sy = SIZE / img.width, SIZE / img.height
        xs.append(((np.asarray(img.resize((SIZE, SIZE), Image.BILINEAR), np.float32) / 255 - MEAN) / STD)
                  .transpose(2, 0, 1))
        mask = np.asarray(Image.open(data / "PedMasks" / f"{name}_mask.png"))
        for k in [k for k in np.unique(mask) if k > 0][:K]:
            yy, xx = np.nonzero(mask == k)
            boxes[i, count[i]] = [xx.min() * sx, yy.min() * sy, (xx.max() + 1) * sx, (yy.max() + 1) * sy]
            count[i] += 1
    return np.stack(xs), boxes, count, names


def flipped(x: np.ndarray, boxes: np.ndarray, count: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    out = boxes.copy()
    out[..., 0], out[..., 2] = SIZE - boxes[..., 2], SIZE - boxes[..., 0]
    out[np.arange(K)[None] >= count[:, None]] = 0
    return x[..., ::-1].copy(), out


def augment(x: torch.Tensor, targets: list, gen: torch.Generator) -> tuple[torch.Tensor, list]:
    """Per image: horizontal flip, a random crop of 60-100% of the side resized back, brightness jitter."""
    import torch.nn.functional as F

    out_x, out_t = [], []
    for img, t in zip(x, targets):
        b = t["boxes"].clone()
        if torch.rand(1, generator=gen) < 0.5:
            img, b = img.flip(-1), torch.stack([SIZE - b[:, 2], b[:, 1], SIZE - b[:, 0], b[:, 3]], 1)
        side = int(SIZE * (0.6 + 0.4 * torch.rand(1, generator=gen).item()))
        i, j = torch.randint(0, SIZE - side + 1, (2,), generator=gen).tolist()
        img = F.interpolate(img[None, :, i:i + side, j:j + side], size=(SIZE, SIZE), mode="bilinear",
                            align_corners=False)[0]
        scale = SIZE / side
        b = ((b - torch.tensor([j, i, j, i], dtype=b.dtype)) * scale).clamp(0, SIZE)
        keep = ((b[:, 2] - b[:, 0]) > 4) & ((b[:, 3] - b[:, 1]) > 8)
        img = img * (0.8 + 0.4 * torch.rand(1, generator=gen)) + 0.2 * torch.randn(1, generator=gen)
        out_x.append(img)
        out_t.append({"boxes": b[keep], "labels": t["labels"][keep]})
    return torch.stack(out_x), out_t


def targets_of(boxes: np.ndarray, count: np.ndarray) -> list:
    return [{"boxes": torch.from_numpy(boxes[i, :count[i]]).float(),
             "labels": torch.ones(int(count[i]), dtype=torch.int64)}
            for i in range(len(count))]


def val_map(net: CenterNet, x: np.ndarray, boxes: np.ndarray, count: np.ndarray) -> float:
    """The runtime's mAP@0.5 (pycocotools), the metric validate and harden report."""
    from ftcompile.labels import BoxLabels
    from ftcompile.runtime.tasks import CocoMAP

    net.eval()
    with torch.no_grad():
        dets = net(torch.from_numpy(x))
    preds = [(d["boxes"].numpy(), d["scores"].numpy(), d["labels"].numpy()) for d in dets]
    return CocoMAP(0.5)(preds, BoxLabels(boxes.astype(np.float64), np.ones(boxes.shape[:2], np.int64), count))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=DEFAULT / "pennfudan")
    ap.add_argument("--work", type=Path, default=HERE / "work")
    ap.add_argument("--epochs", type=int, default=150)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    x, boxes, count, names = load(args.data)
    order = np.random.default_rng(0).permutation(len(x))
    split = {"train": order[:120], "val": order[120:145], "test": order[145:]}
    (args.work / "split.json").write_text(json.dumps({k: [names[i] for i in v] for k, v in split.items()}, indent=1))
    labels = (np.arange(K)[None] < count[:, None]).astype(np.int64)
    tr = split["train"]
    fx, fb = flipped(x[tr], boxes[tr], count[tr])
    np.savez(args.work / "train.npz", x=np.concatenate([x[tr], fx]), boxes=np.concatenate([boxes[tr], fb]),
             labels=np.concatenate([labels[tr]] * 2), count=np.concatenate([count[tr]] * 2))
    for part in ("val", "test"):
        s = split[part]
        np.savez(args.work / f"{part}.npz", x=x[s], boxes=boxes[s], labels=labels[s], count=count[s])

    torch.manual_seed(0)
    net = CenterNet()
    xt, tt = torch.from_numpy(x[tr]), targets_of(boxes[tr], count[tr])
    batch = 8
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=args.epochs * -(-len(tr) // batch))
    gen, log, t0 = torch.Generator().manual_seed(0), [], time.perf_counter()
    for epoch in range(args.epochs):
        net.train()
        for idx in torch.randperm(len(tr), generator=gen).split(batch):
            xb, tb = augment(xt[idx], [tt[i] for i in idx], gen)
            parts = net(xb, tb)
            loss = sum(parts.values())
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        if (epoch + 1) % 10 == 0 or epoch + 1 == args.epochs:
            v = split["val"]
            log.append({"epoch": epoch + 1, **{k: round(p.item(), 4) for k, p in parts.items()},
                        "val_map50": round(val_map(net, x[v], boxes[v], count[v]), 4),
                        "seconds": round(time.perf_counter() - t0)})
            print(json.dumps(log[-1]), flush=True)
    net.eval()
    torch.save(net.state_dict(), args.work / "detector.pt")
    (args.work / "detector.log.json").write_text(json.dumps(log, indent=1))
    s = split["test"]
    print(f"wrote {args.work / 'detector.pt'}: val mAP@0.5 {log[-1]['val_map50']:.3f}, "
          f"test {val_map(net, x[s], boxes[s], count[s]):.3f} after {args.epochs} epochs")


if __name__ == "__main__":
    main()
