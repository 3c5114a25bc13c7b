"""PennFudan pedestrians as a segmentation task: a small U-Net trained from scratch (ERM), exported to ONNX.

Data (from --data, default ../shared/data/pennfudan, see docs/data.md; never copied into the project): the 170
images and their instance masks, resized to 96 x 96 (images bilinear, masks nearest), masks made binary
(pedestrian = 1). Split (seed 0, written to work/split.json): 120 train / 25 val / 25 test. The training set
written for harden holds each image and its mirror (240); the ERM training below adds random crops.
U-Net (Ronneberger et al. 2015), reduced: two poolings, 16/32/64 channels, BatchNorm (folded into the
convolutions by the exporter), transposed-convolution upsampling, one foreground logit per pixel.
Writes work/{train,val,test}.npz (x, masks), work/unet.onnx and work/unet.log.json.
Usage: python examples/pennfudan_unet/prepare.py [--data DIR] [--epochs 80] [--size 96] [--threads 1]
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))
from examples.data_folder import DEFAULT, require  # noqa: E402
MEAN, STD = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)


def load(data: Path, size: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from PIL import Image

    names = sorted(p.stem for p in (require(data, "PNGImages", "PedMasks") / "PNGImages").glob("*.jpg"))
    if not names:
        raise SystemExit(f"error: no images (*.jpg) in {data}/PNGImages; give --data DIR (docs/data.md).")
    xs, ms = [], []
    for name in names:
        img = Image.open(data / "PNGImages" / f"{name}.jpg").convert("RGB").resize((size, size), Image.BILINEAR)
        mask = Image.open(data / "PedMasks" / f"{name}_mask.png").resize((size, size), Image.NEAREST)
        xs.append(((np.asarray(img, np.float32) / 255 - MEAN) / STD).transpose(2, 0, 1))
        ms.append((np.asarray(mask) > 0).astype(np.int64))
    return np.stack(xs), np.stack(ms), names


def block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class UNet(nn.Module):
    def __init__(self, widths=(16, 32, 64)):
        super().__init__()
        a, b, c = widths
        self.enc1, self.enc2, self.mid = block(3, a), block(a, b), block(b, c)
        self.up2, self.dec2 = nn.ConvTranspose2d(c, b, 2, stride=2), block(2 * b, b)
        self.up1, self.dec1 = nn.ConvTranspose2d(b, a, 2, stride=2), block(2 * a, a)
        self.head = nn.Conv2d(a, 1, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        m = self.mid(F.max_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([self.up2(m), e2], 1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], 1))
        return self.head(d1)


def augment(x: torch.Tensor, m: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Horizontal flip and a random crop of 80-100% of the side, resized back."""
    n, size = len(x), x.shape[-1]
    flip = torch.rand(n, generator=gen) < 0.5
    x, m = x.clone(), m.clone()
    x[flip], m[flip] = x[flip].flip(-1), m[flip].flip(-1)
    side = int(size * (0.8 + 0.2 * torch.rand(1, generator=gen).item()))
    i, j = torch.randint(0, size - side + 1, (2,), generator=gen).tolist()
    x = F.interpolate(x[..., i:i + side, j:j + side], size=(size, size), mode="bilinear", align_corners=False)
    m = F.interpolate(m[:, None, i:i + side, j:j + side].float(), size=(size, size), mode="nearest")[:, 0].long()
    return x, m


def dice(logits: torch.Tensor, m: torch.Tensor) -> float:
    """The runtime's Dice (the metric validate and harden report), on the training side's logits."""
    from ftcompile.runtime.tasks import MaskOverlap, segment

    return MaskOverlap("dice")(segment(logits.numpy()), m.numpy())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=DEFAULT / "pennfudan")
    ap.add_argument("--work", type=Path, default=HERE / "work")
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--epochs", type=int, default=80)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    x, m, names = load(args.data, args.size)
    order = np.random.default_rng(0).permutation(len(x))
    split = {"train": order[:120], "val": order[120:145], "test": order[145:]}
    (args.work / "split.json").write_text(json.dumps({k: [names[i] for i in v] for k, v in split.items()}, indent=1))
    tr = split["train"]
    np.savez(args.work / "train.npz", x=np.concatenate([x[tr], x[tr][..., ::-1]]),
             masks=np.concatenate([m[tr], m[tr][..., ::-1]]))
    for part in ("val", "test"):
        np.savez(args.work / f"{part}.npz", x=x[split[part]], masks=m[split[part]])

    torch.manual_seed(0)
    net = UNet()
    xt, mt = torch.from_numpy(x[tr]), torch.from_numpy(m[tr])
    xv, mv = torch.from_numpy(x[split["val"]]), torch.from_numpy(m[split["val"]])
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=args.epochs * -(-len(tr) // 8))
    gen, log, t0 = torch.Generator().manual_seed(0), [], time.perf_counter()
    for epoch in range(args.epochs):
        net.train()
        for idx in torch.randperm(len(tr), generator=gen).split(8):
            xb, mb = augment(xt[idx], mt[idx], gen)
            loss = F.binary_cross_entropy_with_logits(net(xb)[:, 0], mb.float())
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        net.eval()
        with torch.no_grad():
            log.append({"epoch": epoch + 1, "loss": round(loss.item(), 4), "val_dice": round(dice(net(xv), mv), 4),
                        "seconds": round(time.perf_counter() - t0)})
        print(json.dumps(log[-1]), flush=True)
    net.eval()
    torch.onnx.export(net, (torch.zeros(1, 3, args.size, args.size),), str(args.work / "unet.onnx"), dynamo=False,
                      opset_version=17, input_names=["x"], output_names=["scores"],
                      dynamic_axes={"x": {0: "N"}, "scores": {0: "N"}})
    (args.work / "unet.log.json").write_text(json.dumps(log, indent=1))
    print(f"wrote {args.work / 'unet.onnx'}: val Dice {log[-1]['val_dice']:.3f} after {args.epochs} epochs")


if __name__ == "__main__":
    main()
