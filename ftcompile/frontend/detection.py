"""Detector operators: NonMaxSuppression (exact indices), RoiAlign, MaxRoiPool and DeformConv (differentiable in
the feature map), written against the ONNX reference's sampling rules.

A detector whose NMS output feeds a loss has nothing to differentiate there; these ops let such graphs import
with parity (and the backbone in front of them train), while `harden` on detectors takes the ``nn.Module``
factory route (see DESIGN.md).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ftcompile.frontend.converters import geometry
from ftcompile.frontend.ops import text
from ftcompile.frontend.registry import converter


def _corners(boxes, center: int):
    if center:
        x, y, w, h = boxes.unbind(-1)
        return torch.stack([x - w / 2, y - h / 2, x + w / 2, y + h / 2], -1)
    y1, x1, y2, x2 = boxes.unbind(-1)  # ONNX's default: [y1, x1, y2, x2], either corner first
    return torch.stack([torch.minimum(x1, x2), torch.minimum(y1, y2), torch.maximum(x1, x2), torch.maximum(y1, y2)], -1)


def non_max_suppression(boxes, scores, max_out=None, iou=None, score=None, center: int = 0):
    """Selected ``[batch, class, box]`` triples (int64): per batch and class, greedily by score (ties: lower index)."""
    limit = int(max_out.reshape(-1)[0]) if max_out is not None and max_out.numel() else 0
    iou_t = float(iou.reshape(-1)[0]) if iou is not None and iou.numel() else 0.0
    score_t = float(score.reshape(-1)[0]) if score is not None and score.numel() else None
    picked = []
    for b in range(boxes.shape[0]):
        c = _corners(boxes[b].double(), center)
        area = (c[:, 2] - c[:, 0]) * (c[:, 3] - c[:, 1])
        for k in range(scores.shape[1]):
            s = scores[b, k]
            order = [i for i in sorted(range(len(s)), key=lambda i: (-float(s[i]), i))
                     if score_t is None or float(s[i]) > score_t]
            chosen: list[int] = []
            for i in order:
                if len(chosen) >= limit:
                    break
                if chosen:
                    j = torch.tensor(chosen)
                    w = (torch.minimum(c[i, 2], c[j, 2]) - torch.maximum(c[i, 0], c[j, 0])).clamp(min=0)
                    h = (torch.minimum(c[i, 3], c[j, 3]) - torch.maximum(c[i, 1], c[j, 1])).clamp(min=0)
                    inter = w * h
                    union = area[i] + area[j] - inter
                    ratio = torch.where((inter > 0) & (area[i] > 0) & (area[j] > 0) & (union > 0), inter / union,
                                        torch.zeros_like(inter))
                    if bool((ratio > iou_t).any()):
                        continue
                chosen.append(i)
            picked += [[b, k, i] for i in chosen]
    return torch.tensor(picked, dtype=torch.int64).reshape(-1, 3)


def roi_align(x, rois, batch_index, *, out_h: int = 1, out_w: int = 1, ratio: int = 0, scale: float = 1.0,
              mode: str = "avg", half_pixel: bool = True):
    """ONNX RoiAlign: each bin the average (or max) of bilinear samples on a grid inside it."""
    h, w = x.shape[2], x.shape[3]
    outs = []
    for r in range(rois.shape[0]):
        off = 0.5 if half_pixel else 0.0
        x1, y1, x2, y2 = (float(v) * scale - off for v in rois[r])
        rw, rh = x2 - x1, y2 - y1
        if not half_pixel:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        bh, bw = rh / out_h, rw / out_w
        gh = ratio if ratio > 0 else math.ceil(rh / out_h)
        gw = ratio if ratio > 0 else math.ceil(rw / out_w)
        ys = (y1 + torch.arange(out_h, dtype=torch.float64).reshape(-1, 1) * bh
              + (torch.arange(gh, dtype=torch.float64) + 0.5) * bh / gh).reshape(-1)  # out_h * gh
        xs = (x1 + torch.arange(out_w, dtype=torch.float64).reshape(-1, 1) * bw
              + (torch.arange(gw, dtype=torch.float64) + 0.5) * bw / gw).reshape(-1)
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        outside = (yy < -1.0) | (yy > h) | (xx < -1.0) | (xx > w)
        yy, xx = yy.clamp(min=0), xx.clamp(min=0)
        y0, x0 = yy.floor().long().clamp(max=h - 1), xx.floor().long().clamp(max=w - 1)
        yy, xx = torch.where(y0 >= h - 1, y0.double(), yy), torch.where(x0 >= w - 1, x0.double(), xx)
        y1i, x1i = (y0 + 1).clamp(max=h - 1), (x0 + 1).clamp(max=w - 1)
        ly, lx = yy - y0, xx - x0
        weights = [(1 - ly) * (1 - lx), (1 - ly) * lx, ly * (1 - lx), ly * lx]
        feat = x[int(batch_index[r])]
        taps = [feat[:, a, b] * wt.to(x.dtype) for (a, b), wt in
                zip(((y0, x0), (y0, x1i), (y1i, x0), (y1i, x1i)), weights)]
        taps = [torch.where(outside, torch.zeros_like(t), t) for t in taps]
        c = feat.shape[0]
        if mode == "avg":
            v = sum(taps).reshape(c, out_h, gh, out_w, gw).sum((2, 4)) / max(gh * gw, 1)
        else:
            v = torch.stack(taps).amax(0).reshape(c, out_h, gh, out_w, gw).amax((2, 4))
        outs.append(v)
    return torch.stack(outs) if outs else x.new_zeros(0, x.shape[1], out_h, out_w)


def max_roi_pool(x, rois, *, pooled=(1, 1), scale: float = 1.0):
    """Caffe's ROI max pooling: rounded ROI corners, bins from floor/ceil of the bin edges, empty bins 0."""
    ph, pw = pooled
    h, w = x.shape[2], x.shape[3]
    outs = []
    for r in rois:
        b = int(r[0])
        # C's round (half away from zero), as Caffe and onnxruntime round the ROI corners
        x1, y1, x2, y2 = (int(math.copysign(math.floor(abs(float(v) * scale) + 0.5), float(v))) for v in r[1:])
        rh, rw = max(y2 - y1 + 1, 1), max(x2 - x1 + 1, 1)
        rows = []
        for i in range(ph):
            hs = min(max(math.floor(i * rh / ph) + y1, 0), h)
            he = min(max(math.ceil((i + 1) * rh / ph) + y1, 0), h)
            cols = []
            for j in range(pw):
                ws = min(max(math.floor(j * rw / pw) + x1, 0), w)
                we = min(max(math.ceil((j + 1) * rw / pw) + x1, 0), w)
                if he <= hs or we <= ws:
                    cols.append(x.new_zeros(x.shape[1]))
                else:
                    cols.append(x[b, :, hs:he, ws:we].amax((1, 2)))
            rows.append(torch.stack(cols, -1))
        outs.append(torch.stack(rows, -2))
    return torch.stack(outs)


def deform_conv(x, weight, offset, bias=None, mask=None, *, strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1),
                groups: int = 1, offset_groups: int = 1):
    """2-D deformable convolution: each kernel tap samples the input bilinearly at its offset (zero outside),
    scaled by the mask, then a grouped matrix product with the weights."""
    n, c, h, w = x.shape
    oc, _, kh, kw = weight.shape
    oh, ow = offset.shape[2], offset.shape[3]
    k = kh * kw
    off = offset.reshape(n, offset_groups, kh, kw, 2, oh, ow)
    base_h = (-pads[0] + strides[0] * torch.arange(oh, dtype=x.dtype)).reshape(1, 1, 1, oh, 1)
    base_w = (-pads[1] + strides[1] * torch.arange(ow, dtype=x.dtype)).reshape(1, 1, 1, 1, ow)
    tap_h = (torch.arange(kh, dtype=x.dtype) * dilations[0]).reshape(1, kh, 1, 1, 1)
    tap_w = (torch.arange(kw, dtype=x.dtype) * dilations[1]).reshape(1, 1, kw, 1, 1)
    m = torch.ones(n, offset_groups, kh, kw, oh, ow, dtype=x.dtype) if mask is None else \
        mask.reshape(n, offset_groups, kh, kw, oh, ow)
    per = c // offset_groups
    cols = []
    for g in range(offset_groups):
        py = base_h + tap_h + off[:, g, :, :, 0]  # n x kh x kw x oh x ow
        px = base_w + tap_w + off[:, g, :, :, 1]
        grid = torch.stack([px / max(w - 1, 1) * 2 - 1, py / max(h - 1, 1) * 2 - 1], -1).reshape(n, k * oh, ow, 2)
        sampled = F.grid_sample(x[:, g * per:(g + 1) * per], grid, align_corners=True)  # n x per x k*oh x ow
        cols.append(sampled.reshape(n, per, k, oh, ow) * m[:, g].reshape(n, 1, k, oh, ow))
    col = torch.cat(cols, 1)  # n x c x k x oh x ow
    cg, og = c // groups, oc // groups
    out = torch.cat([torch.einsum("nckhw,ock->nohw", col[:, i * cg:(i + 1) * cg],
                                  weight[i * og:(i + 1) * og].reshape(og, cg, k)) for i in range(groups)], 1)
    return out if bias is None else out + bias.reshape(1, -1, 1, 1)


@converter("NonMaxSuppression")
def _nms(b, node, inputs, attrs):
    args = list(inputs) + [None] * (5 - len(inputs))
    return b.call(non_max_suppression, tuple(args[:5]), {"center": attrs.get("center_point_box", 0)})


@converter("RoiAlign")
def _roi_align(b, node, inputs, attrs):
    half = text(attrs.get("coordinate_transformation_mode"), "half_pixel" if b.opset >= 16 else "output_half_pixel")
    return b.call(roi_align, tuple(inputs[:3]), {
        "out_h": attrs.get("output_height", 1), "out_w": attrs.get("output_width", 1),
        "ratio": attrs.get("sampling_ratio", 0), "scale": attrs.get("spatial_scale", 1.0),
        "mode": text(attrs.get("mode"), "avg"), "half_pixel": half == "half_pixel"})


@converter("MaxRoiPool")
def _max_roi_pool(b, node, inputs, attrs):
    return b.call(max_roi_pool, (inputs[0], inputs[1]), {"pooled": list(attrs["pooled_shape"]),
                                                         "scale": attrs.get("spatial_scale", 1.0)})


@converter("DeformConv")
def _deform_conv(b, node, inputs, attrs):
    args = list(inputs) + [None] * (5 - len(inputs))
    _, strides, dil, pads = geometry(b, node, attrs, args[1])
    return b.call(deform_conv, tuple(args[:5]), {"strides": strides, "pads": pads, "dilations": dil,
                                                 "groups": attrs.get("group", 1),
                                                 "offset_groups": attrs.get("offset_group", 1)})
