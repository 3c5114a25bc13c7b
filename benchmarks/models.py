"""The benchmark networks (torch), shared by the benchmarks and the demo."""
import torch
from torch import nn


def mlp(width: int = 512, depth: int = 2, classes: int = 10) -> nn.Module:
    layers, prev = [nn.Flatten()], 784
    for _ in range(depth):
        layers += [nn.Linear(prev, width), nn.ReLU()]
        prev = width
    return nn.Sequential(*layers, nn.Linear(prev, classes))


def lenet5(classes: int = 10) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, classes))


def cifar_cnn(classes: int = 10, width: int = 32) -> nn.Module:
    """An AlexNet-style CNN sized for CPU: three conv blocks (32-64-128) and two fully connected layers."""
    w = width
    return nn.Sequential(
        nn.Conv2d(3, w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(2 * w, 4 * w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(4 * w * 16, 256), nn.ReLU(), nn.Linear(256, classes))


def export(model: nn.Module, path, shape=(1, 1, 28, 28)) -> None:
    model.eval()
    torch.onnx.export(model, (torch.zeros(shape),), str(path), dynamo=False, opset_version=17,
                      input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}})
