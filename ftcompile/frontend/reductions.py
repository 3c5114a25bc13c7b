"""Reductions: the ten Reduce* operators, ArgMax/ArgMin, CumSum/CumProd.

``axes`` is an attribute until opset 17 (ReduceSum: 12) and an input after; with no axes every axis is reduced,
unless ``noop_with_empty_axes`` asks for the identity. A reduction over an empty set gives the reduction's
identity (0 for sums, 1 for products, -inf for a max, +inf for a min), as opset 18 spells out.
"""
from __future__ import annotations

import math

import torch

from ftcompile.frontend.ops import ints
from ftcompile.frontend.registry import converter

REDUCE = ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum",
          "ReduceLogSumExp", "ReduceSumSquare")
_AXES_INPUT_SINCE = {"ReduceSum": 13}  # the others: 18


def reduce(x, axes=None, keepdims: int = 1, noop: int = 0, kind: str = "ReduceMean"):
    """ONNX ``Reduce<kind>`` of ``x`` over ``axes`` (None or empty: all axes, or none with ``noop``)."""
    dims = [] if axes is None else [a % max(x.dim(), 1) for a in ints(axes)]
    if not dims:
        if noop:
            return x.clone()
        dims = list(range(x.dim()))
    if x.dim() == 0:
        dims = []
    keep = bool(keepdims)
    if kind in ("ReduceMax", "ReduceMin"):
        if any(x.shape[d] == 0 for d in dims):
            shape = [1 if d in dims else n for d, n in enumerate(x.shape)] if keep else \
                [n for d, n in enumerate(x.shape) if d not in dims]
            if x.dtype == torch.bool:
                return torch.full(shape, kind == "ReduceMin", dtype=torch.bool)
            big = math.inf if x.dtype.is_floating_point else torch.iinfo(x.dtype).max
            return torch.full(shape, -big if kind == "ReduceMax" else big, dtype=x.dtype)
        if x.dtype == torch.bool:
            fn = torch.amax if kind == "ReduceMax" else torch.amin
            return fn(x.to(torch.uint8), dim=dims, keepdim=keep).to(torch.bool) if dims else x.clone()
        fn = torch.amax if kind == "ReduceMax" else torch.amin
        return fn(x, dim=dims, keepdim=keep) if dims else x.clone()
    if not dims:
        dims_sum = lambda t: t  # noqa: E731  (a scalar: nothing to reduce)
    else:
        dims_sum = lambda t: torch.sum(t, dim=dims, keepdim=keep)  # noqa: E731
    if kind == "ReduceSum":
        return dims_sum(x).to(x.dtype)
    if kind == "ReduceMean":
        return torch.mean(x, dim=dims, keepdim=keep) if dims else x.clone()
    if kind == "ReduceProd":
        out = x
        for d in sorted(dims, reverse=True):
            out = torch.prod(out, dim=d, keepdim=keep)
        return out.to(x.dtype)
    if kind == "ReduceL1":
        return dims_sum(x.abs()).to(x.dtype)
    if kind == "ReduceL2":
        return torch.sqrt(dims_sum(x * x)).to(x.dtype)
    if kind == "ReduceSumSquare":
        return dims_sum(x * x).to(x.dtype)
    if kind == "ReduceLogSum":
        return torch.log(dims_sum(x))
    if kind == "ReduceLogSumExp":
        if not dims:
            return x.clone()
        if any(x.shape[d] == 0 for d in dims):
            return torch.log(dims_sum(x))
        return torch.logsumexp(x, dim=dims, keepdim=keep).to(x.dtype)
    raise ValueError(kind)


def arg_extreme(x, axis: int = 0, keepdims: int = 1, select_last_index: int = 0, largest: bool = True):
    """ArgMax/ArgMin: the first extreme along ``axis``, or the last one with ``select_last_index``."""
    fn = torch.argmax if largest else torch.argmin
    if x.dtype == torch.bool:
        x = x.to(torch.uint8)
    if select_last_index:
        n = x.shape[axis]
        out = n - 1 - fn(x.flip(axis), dim=axis, keepdim=bool(keepdims))
    else:
        out = fn(x, dim=axis, keepdim=bool(keepdims))
    return out.to(torch.int64)


def cumulative(x, axis, exclusive: int = 0, reverse: int = 0, prod: bool = False):
    """CumSum/CumProd along ``axis`` (an int or a one-element tensor)."""
    axis = int(axis) if not torch.is_tensor(axis) else int(axis.reshape(-1)[0])
    y = x.flip(axis) if reverse else x
    if exclusive:
        first = torch.full_like(y.narrow(axis, 0, 1), 1 if prod else 0)
        y = torch.cat([first, y.narrow(axis, 0, y.shape[axis] - 1)], dim=axis)
    y = torch.cumprod(y, dim=axis) if prod else torch.cumsum(y, dim=axis)
    y = y.to(x.dtype)
    return y.flip(axis) if reverse else y


def _reduce_attrs(b, node, inputs, attrs):
    return b.call(reduce, (inputs[0],), {"axes": attrs.get("axes"), "keepdims": attrs.get("keepdims", 1),
                                         "kind": node.op_type})


def _reduce_input(b, node, inputs, attrs):
    axes = inputs[1] if len(inputs) > 1 else None
    return b.call(reduce, (inputs[0], axes), {"keepdims": attrs.get("keepdims", 1),
                                              "noop": attrs.get("noop_with_empty_axes", 0), "kind": node.op_type})


for _op in REDUCE:
    _since = _AXES_INPUT_SINCE.get(_op, 18)
    converter(_op, until=_since - 1)(_reduce_attrs)
    converter(_op, since=_since)(_reduce_input)


@converter("ArgMax", "ArgMin")
def _arg(b, node, inputs, attrs):
    return b.call(arg_extreme, (inputs[0],), {"axis": attrs.get("axis", 0), "keepdims": attrs.get("keepdims", 1),
                                              "select_last_index": attrs.get("select_last_index", 0),
                                              "largest": node.op_type == "ArgMax"})


@converter("CumSum", "CumProd")
def _cumulative(b, node, inputs, attrs):
    return b.call(cumulative, (inputs[0], inputs[1]), {"exclusive": attrs.get("exclusive", 0),
                                                        "reverse": attrs.get("reverse", 0),
                                                        "prod": node.op_type == "CumProd"})
