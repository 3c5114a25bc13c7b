"""FTNA's error-correcting output code head (Liu et al., DAC 2019), in torch and in ONNX.

The output layer is replaced by one producing ``L`` code bits; class ``c`` owns codeword ``C[c]`` (rows of
a Sylvester-Hadamard matrix: every two codewords differ in ``L/2`` bits, so up to ``L/4 - 1`` flipped bits
still decode to the right class). Decoding is by nearest Hamming distance: the class score is the number
of bits that match its codeword, so ``argmax`` of the scores is the nearest codeword and the exported
model scores like any classifier. The decoder is digital logic (Greater, Equal, ReduceSum on a boolean
codebook), never a crossbar layer, so the runtime does not drift it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from ftcompile.errors import UnsupportedModelError
from ftcompile.passes.layers import find_layers


def hadamard_codes(classes: int, bits: int = 16) -> np.ndarray:
    """``classes x L`` 0/1 codewords, ``L`` = the larger of ``bits`` and the next power of two above ``classes``."""
    length = 1
    while length < max(bits, classes + 1):
        length *= 2
    h = np.ones((1, 1), np.int8)
    while len(h) < length:
        h = np.block([[h, h], [h, -h]])
    return (h[1:classes + 1] > 0).astype(np.uint8)  # row 0 is all ones: no information


def min_distance(codes: np.ndarray) -> int:
    diff = (codes[:, None, :] != codes[None, :, :]).sum(-1)
    return int(diff[~np.eye(len(codes), dtype=bool)].min())


def decode_scores(bits_logits: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Per class, the number of code bits (sign of the logits) that match its codeword."""
    bits = bits_logits > 0
    return (bits.unsqueeze(-2) == codes.bool()).sum(-1).to(bits_logits.dtype)


class EcocLoss:
    """Bitwise binary cross-entropy against each example's codeword (a class: it pickles to workers)."""

    def __init__(self, codes: np.ndarray):
        self.codes = torch.from_numpy(codes.astype(np.float32))

    def __call__(self, bits_logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        target = self.codes.to(bits_logits.device)[y]
        return F.binary_cross_entropy_with_logits(bits_logits, target.to(bits_logits.dtype))


class EcocClassifier(nn.Module):
    """``body`` ends in ``L`` code logits. Training mode returns them (for the bitwise loss); eval mode
    returns class scores (bits matching each codeword), which is what the objective and ONNX see."""

    def __init__(self, body: nn.Module, codes: np.ndarray):
        super().__init__()
        self.body = body
        self.register_buffer("codes", torch.from_numpy(codes.astype(np.int64)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.body(x)
        return z if self.training else decode_scores(z, self.codes)


@dataclass
class EcocHead:
    """What export needs: the replaced layer's state keys and source tensors, and the codebook."""

    target: str
    codes: np.ndarray
    model: EcocClassifier

    @property
    def keys(self) -> tuple[str, str]:
        return f"{self.target}.weight", f"{self.target}.bias"

    @property
    def loss(self) -> EcocLoss:
        return EcocLoss(self.codes)


def attach_ecoc_head(imported, bits: int = 16, seed: int = 0) -> EcocHead:
    """Swap the single output ``Linear`` of ``imported.module`` for one with ``L`` code outputs."""
    gm = imported.module
    outputs = [layer for layer in find_layers(gm, imported.sources) if layer.is_output]
    if len(outputs) != 1 or outputs[0].kind != "Linear":
        raise UnsupportedModelError("ftna needs one fully connected output layer (Gemm/MatMul) feeding the output; "
                                    f"this model has {[(o.target, o.kind) for o in outputs]}. Use another --method.")
    old = gm.get_submodule(outputs[0].target)
    node = next(n for n in gm.graph.nodes if n.op == "call_module" and n.target == outputs[0].target)
    if [u.op for u in node.users] != ["output"]:
        raise UnsupportedModelError(f"ftna replaces the output layer {outputs[0].target}, but its result goes through "
                                    "more ops (e.g. Softmax) before the output; export the logits instead.")
    codes = hadamard_codes(old.out_features, bits)
    torch.manual_seed(seed)
    new = nn.Linear(old.in_features, codes.shape[1], bias=old.bias is not None)
    gm.add_submodule(outputs[0].target, new)
    gm.recompile()
    return EcocHead(outputs[0].target, codes, EcocClassifier(gm, codes))


def ecoc_onnx(model: onnx.ModelProto, head: EcocHead, sources: dict, output: str) -> onnx.ModelProto:
    """Write the code layer's weights over the source output layer's and append the Hamming decoder."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    state = head.model.body.state_dict()
    inits = {i.name: i for i in g.initializer}
    for key in head.keys:
        if key not in sources:
            continue
        src = sources[key]
        arr = state[key].detach().cpu().numpy()
        arr = arr.T if src.transposed else arr
        dtype = helper.tensor_dtype_to_np_dtype(inits[src.name].data_type)
        inits[src.name].CopyFrom(numpy_helper.from_array(np.ascontiguousarray(arr).astype(dtype), src.name))
    bits_name = output + "__ecoc_bits"
    for node in g.node:  # the layer's result becomes the code bits; the graph output becomes the scores
        for i, name in enumerate(node.output):
            if name == output:
                node.output[i] = bits_name
        for i, name in enumerate(node.input):
            if name == output:
                node.input[i] = bits_name
    keep = [v for v in g.value_info if v.name != output]
    del g.value_info[:]
    g.value_info.extend(keep)
    opset = next((o.version for o in out.opset_import if o.domain in ("", "ai.onnx")), 13)
    codes = head.codes.astype(bool)
    g.initializer.extend([numpy_helper.from_array(codes, "ftcompile_ecoc_codes"),
                          numpy_helper.from_array(np.zeros((), np.float32), "ftcompile_ecoc_zero")])
    nodes = [helper.make_node("Greater", [bits_name, "ftcompile_ecoc_zero"], ["ftcompile_ecoc_bit"], name="ecoc_sign")]
    if opset >= 13:
        g.initializer.extend([numpy_helper.from_array(np.array([1], np.int64), "ftcompile_ecoc_axis1"),
                              numpy_helper.from_array(np.array([2], np.int64), "ftcompile_ecoc_axis2")])
        nodes.append(helper.make_node("Unsqueeze", ["ftcompile_ecoc_bit", "ftcompile_ecoc_axis1"],
                                      ["ftcompile_ecoc_b3"], name="ecoc_unsqueeze"))
    else:
        nodes.append(helper.make_node("Unsqueeze", ["ftcompile_ecoc_bit"], ["ftcompile_ecoc_b3"], axes=[1],
                                      name="ecoc_unsqueeze"))
    nodes += [helper.make_node("Equal", ["ftcompile_ecoc_b3", "ftcompile_ecoc_codes"], ["ftcompile_ecoc_match"],
                               name="ecoc_match"),
              helper.make_node("Cast", ["ftcompile_ecoc_match"], ["ftcompile_ecoc_matchf"], to=TensorProto.FLOAT,
                               name="ecoc_cast")]
    if opset >= 13:
        nodes.append(helper.make_node("ReduceSum", ["ftcompile_ecoc_matchf", "ftcompile_ecoc_axis2"], [output],
                                      keepdims=0, name="ecoc_scores"))
    else:
        nodes.append(helper.make_node("ReduceSum", ["ftcompile_ecoc_matchf"], [output], axes=[2], keepdims=0,
                                      name="ecoc_scores"))
    g.node.extend(nodes)
    return out
