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


def train_erm(x, y, epochs=15, seed=0, net=None):
    """Plain (ERM) training with Adam; a LeNet-5 unless ``net`` is given."""
    torch.manual_seed(seed)
    net = lenet5() if net is None else net
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt), 64):
            idx = order[i:i + 64]
            loss = torch.nn.functional.cross_entropy(net(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


def export(model: nn.Module, path, shape=(1, 1, 28, 28)) -> None:
    model.eval()
    torch.onnx.export(model, (torch.zeros(shape),), str(path), dynamo=False, opset_version=17,
                      input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}})
