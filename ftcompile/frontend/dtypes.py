"""ONNX element types as torch dtypes, and numpy arrays (ml_dtypes' bfloat16/float8 included) as torch tensors."""
from __future__ import annotations

import numpy as np
import torch
from onnx import TensorProto

# ONNX TensorProto.DataType -> torch dtype (the types torch computes in; 4-bit and 2-bit types have none)
DTYPES = {TensorProto.FLOAT: torch.float32, TensorProto.UINT8: torch.uint8, TensorProto.INT8: torch.int8,
          TensorProto.UINT16: torch.uint16, TensorProto.INT16: torch.int16, TensorProto.INT32: torch.int32,
          TensorProto.INT64: torch.int64, TensorProto.BOOL: torch.bool, TensorProto.FLOAT16: torch.float16,
          TensorProto.DOUBLE: torch.float64, TensorProto.UINT32: torch.uint32, TensorProto.UINT64: torch.uint64,
          TensorProto.BFLOAT16: torch.bfloat16, TensorProto.FLOAT8E4M3FN: torch.float8_e4m3fn,
          TensorProto.FLOAT8E4M3FNUZ: torch.float8_e4m3fnuz, TensorProto.FLOAT8E5M2: torch.float8_e5m2,
          TensorProto.FLOAT8E5M2FNUZ: torch.float8_e5m2fnuz}
# ml_dtypes' names (numpy) of the types numpy lacks, with the torch dtype of the same bits
_ML = {"bfloat16": torch.bfloat16, "float8_e4m3fn": torch.float8_e4m3fn, "float8_e4m3fnuz": torch.float8_e4m3fnuz,
       "float8_e5m2": torch.float8_e5m2, "float8_e5m2fnuz": torch.float8_e5m2fnuz}


def torch_dtype(onnx_type: int) -> torch.dtype:
    """The torch dtype of an ONNX element type; a ValueError names the type torch cannot hold."""
    if onnx_type not in DTYPES:
        raise ValueError(f"element type {TensorProto.DataType.Name(onnx_type)} has no torch dtype")
    return DTYPES[onnx_type]


def to_torch(arr: np.ndarray) -> torch.Tensor:
    """A torch tensor owning a copy of ``arr``; ml_dtypes' bfloat16/float8 keep their bits."""
    name = arr.dtype.name
    if name in _ML:
        bits = np.ascontiguousarray(arr).view(np.uint16 if arr.dtype.itemsize == 2 else np.uint8)
        return torch.from_numpy(bits.copy()).view(_ML[name])
    if arr.dtype.kind == "V" or name.startswith(("int4", "uint4", "int2", "uint2", "float4", "float8")):
        raise ValueError(f"element type {name} has no torch dtype")
    return torch.from_numpy(np.array(arr, copy=True))
