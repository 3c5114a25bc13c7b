"""Front ends: ONNX files and torch modules into trainable torch.fx graphs (needs torch)."""
from ftcompile.frontend.onnx_import import ImportedModel, ParamSource, import_onnx  # noqa: F401
from ftcompile.frontend.torch_import import import_torch, load_model  # noqa: F401
