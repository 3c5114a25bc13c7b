"""Element-wise operators: math, activations, comparisons, logic and bits, casts, variadic Sum/Mean/Max/Min.

Attributes arrive with the schema's defaults filled in (``onnx_import.convert``). Before opset 7 the binary
operators broadcast only when told (``broadcast=1``), aligning the second input at ``axis``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ftcompile.frontend import ops
from ftcompile.frontend.dtypes import torch_dtype
from ftcompile.frontend.registry import converter

UNARY = {"Relu": F.relu, "Sigmoid": torch.sigmoid, "Tanh": torch.tanh, "Exp": torch.exp, "Log": torch.log,
         "Sqrt": torch.sqrt, "Neg": torch.neg, "Abs": torch.abs, "Erf": torch.erf, "Reciprocal": torch.reciprocal,
         "Floor": torch.floor, "Ceil": torch.ceil, "Softplus": F.softplus, "Softsign": F.softsign,
         "Not": torch.logical_not, "Sin": torch.sin, "Cos": torch.cos, "Tan": torch.tan, "Asin": torch.asin,
         "Acos": torch.acos, "Atan": torch.atan, "Sinh": torch.sinh, "Cosh": torch.cosh, "Asinh": torch.asinh,
         "Acosh": torch.acosh, "Atanh": torch.atanh, "HardSwish": F.hardswish, "Mish": F.mish, "Round": torch.round,
         "Sign": torch.sign, "IsNaN": torch.isnan, "BitwiseNot": torch.bitwise_not, "Det": torch.linalg.det}
BINARY = {"Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Div": ops.div, "Pow": ops.pow_,
          "Equal": torch.eq, "Less": torch.lt, "Greater": torch.gt, "LessOrEqual": torch.le,
          "GreaterOrEqual": torch.ge, "And": torch.logical_and, "Or": torch.logical_or, "Xor": torch.logical_xor,
          "BitwiseAnd": torch.bitwise_and, "BitwiseOr": torch.bitwise_or, "BitwiseXor": torch.bitwise_xor}
# opset 1-6 forms of the binary operators carry the broadcast/axis attributes
_LEGACY = ("Add", "Sub", "Mul", "Div", "Pow", "Equal", "Less", "Greater", "And", "Or", "Xor")
VARIADIC = ("Sum", "Max", "Min", "Mean")  # ops.variadic folds them


@converter(*UNARY)
def _unary(b, node, inputs, attrs):
    return b.call(UNARY[node.op_type], (inputs[0],))


@converter(*BINARY)
def _binary(b, node, inputs, attrs):
    x, y = inputs[0], inputs[1]
    if node.op_type in _LEGACY and b.opset < 7 and attrs.get("broadcast", 0) and "axis" in attrs:
        y = b.call(ops.align_at, (y, x), {"axis": attrs["axis"]})
    return b.call(BINARY[node.op_type], (x, y))


@converter(*VARIADIC)
def _variadic(b, node, inputs, attrs):
    return b.call(ops.variadic, tuple(inputs), {"fn": node.op_type})


@converter("Mod")
def _mod(b, node, inputs, attrs):
    return b.call(ops.mod, (inputs[0], inputs[1]), {"fmod": attrs.get("fmod", 0)})


@converter("BitShift")
def _bit_shift(b, node, inputs, attrs):
    left = ops.text(attrs.get("direction")) == "LEFT"
    return b.call(torch.bitwise_left_shift if left else torch.bitwise_right_shift, (inputs[0], inputs[1]))


@converter("IsInf")
def _is_inf(b, node, inputs, attrs):
    return b.call(ops.is_inf, (inputs[0],), {"negative": attrs.get("detect_negative", 1),
                                             "positive": attrs.get("detect_positive", 1)})


@converter("Identity")
def _identity(b, node, inputs, attrs):
    return inputs[0]


@converter("Dropout")
def _dropout(b, node, inputs, attrs):
    """Inference: the identity and an all-true mask. ``training_mode`` true (opset 12+) draws random masks."""
    training = inputs[2] if len(inputs) > 2 else None
    if training is not None and (not torch.is_tensor(training) or bool(training)):
        raise ValueError("Dropout in training mode draws random masks (export the model in eval mode)")
    if len(node.output) > 1 and node.output[1]:
        return [inputs[0], b.call(ops.ones_mask, (inputs[0],))]
    return inputs[0]


# --- activations -------------------------------------------------------------------------------
@converter("LeakyRelu")
def _leaky_relu(b, node, inputs, attrs):
    return b.call(F.leaky_relu, (inputs[0],), {"negative_slope": attrs.get("alpha", 0.01)})


@converter("Elu")
def _elu(b, node, inputs, attrs):
    return b.call(F.elu, (inputs[0],), {"alpha": attrs.get("alpha", 1.0)})


@converter("Celu")
def _celu(b, node, inputs, attrs):
    return b.call(F.celu, (inputs[0],), {"alpha": attrs.get("alpha", 1.0)})


@converter("Selu")
def _selu(b, node, inputs, attrs):
    return b.call(ops.selu, (inputs[0],), {"alpha": attrs.get("alpha", 1.67326319217681884765625),
                                           "gamma": attrs.get("gamma", 1.05070102214813232421875)})


@converter("Gelu")
def _gelu(b, node, inputs, attrs):
    return b.call(F.gelu, (inputs[0],), {"approximate": ops.text(attrs.get("approximate"), "none")})


@converter("HardSigmoid")
def _hard_sigmoid(b, node, inputs, attrs):
    return b.call(ops.hard_sigmoid, (inputs[0],), {"alpha": attrs.get("alpha", 0.2), "beta": attrs.get("beta", 0.5)})


@converter("ThresholdedRelu")
def _thresholded_relu(b, node, inputs, attrs):
    return b.call(ops.thresholded_relu, (inputs[0],), {"alpha": attrs.get("alpha", 1.0)})


@converter("Shrink")
def _shrink(b, node, inputs, attrs):
    return b.call(ops.shrink, (inputs[0],), {"lambd": attrs.get("lambd", 0.5), "bias": attrs.get("bias", 0.0)})


@converter("Swish")
def _swish(b, node, inputs, attrs):
    return b.call(ops.swish, (inputs[0],), {"alpha": attrs.get("alpha", 1.0)})


@converter("SwiGLU")
def _swiglu(b, node, inputs, attrs):
    return b.call(ops.swiglu, (inputs[0], inputs[1]), {"alpha": attrs.get("alpha", 1.0)})


@converter("PRelu")
def _prelu(b, node, inputs, attrs):
    return b.call(ops.prelu, (inputs[0], inputs[1]), {"legacy": b.opset < 7})


@converter("Clip", until=10)
def _clip_attrs(b, node, inputs, attrs):
    return b.call(ops.clip, (inputs[0],), {"lo": attrs.get("min"), "hi": attrs.get("max")})


@converter("Clip", since=11)
def _clip(b, node, inputs, attrs):
    args = list(inputs) + [None] * (3 - len(inputs))
    return b.call(ops.clip, tuple(args[:3]))


@converter("Softmax", "LogSoftmax", "Hardmax", until=12)
def _softmax_flat(b, node, inputs, attrs):
    """Opset 1-12: the input is flattened to 2-D at ``axis`` and normalized over the second dimension."""
    return b.call(ops.softmax, (inputs[0],), {"axis": attrs.get("axis", 1), "legacy": True, "kind": node.op_type})


@converter("Softmax", "LogSoftmax", "Hardmax", since=13)
def _softmax(b, node, inputs, attrs):
    return b.call(ops.softmax, (inputs[0],), {"axis": attrs.get("axis", -1), "legacy": False, "kind": node.op_type})


@converter("Where")
def _where(b, node, inputs, attrs):
    return b.call(torch.where, (inputs[0], inputs[1], inputs[2]))


# --- casts -------------------------------------------------------------------------------------
@converter("Cast")
def _cast(b, node, inputs, attrs):
    return b.call(ops.cast, (inputs[0],), {"dtype": torch_dtype(attrs["to"]), "saturate": attrs.get("saturate", 1)})


@converter("CastLike")
def _cast_like(b, node, inputs, attrs):
    return b.call(ops.cast_like, (inputs[0], inputs[1]), {"saturate": attrs.get("saturate", 1)})


@converter("BitCast")
def _bit_cast(b, node, inputs, attrs):
    return b.call(ops.bit_cast, (inputs[0],), {"dtype": torch_dtype(attrs["to"])})


# --- products ----------------------------------------------------------------------------------
@converter("Einsum")
def _einsum(b, node, inputs, attrs):
    return b.call(ops.einsum, tuple(inputs), {"equation": ops.text(attrs["equation"])})

