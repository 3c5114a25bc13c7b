"""The benchmark networks (torch), shared by the benchmarks and the demo."""
import torch
import torch.nn.functional as F
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


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm. When the shape changes the shortcut is a 1x1 projection with
    BatchNorm (option B, ``projection=True``) or subsamples and zero-pads the new channels (option A, the
    paper's choice for CIFAR ResNets)."""

    def __init__(self, cin: int, cout: int, stride: int, projection: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = nn.Sequential()
        self.pad = 0
        if (stride != 1 or cin != cout) and projection:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        elif stride != 1 or cin != cout:
            self.pad = cout - cin

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        short = self.short(x) if not self.pad else \
            F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return F.relu(self.bn2(self.conv2(out)) + short)


def resnet18_cifar(classes: int = 10, width: int = 64) -> nn.Module:
    """ResNet-18 for 32x32 inputs (3x3 stem, no max-pool), ``width`` channels in the first stage."""
    layers, cin = [nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()], width
    for i, mult in enumerate((1, 2, 4, 8)):
        for j in range(2):
            layers.append(BasicBlock(cin, width * mult, 2 if (i > 0 and j == 0) else 1))
            cin = width * mult
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes))


def vgg11_cifar(classes: int = 10, width: int = 64) -> nn.Module:
    """VGG-11 (configuration A) for 32x32 inputs, no batch norm, ``width`` channels in the first block."""
    cfg, layers, cin = [1, "M", 2, "M", 4, 4, "M", 8, 8, "M", 8, 8, "M"], [], 3
    for c in cfg:
        if c == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(cin, width * c, 3, padding=1), nn.ReLU()]
            cin = width * c
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(cin, 512), nn.ReLU(), nn.Linear(512, classes))


class PreActBlock(nn.Module):
    """The pre-activation basic block (He et al. 2016, "Identity mappings in deep residual networks"):
    BatchNorm and ReLU before each 3x3 convolution, nothing after the addition; a 1x1 projection of the
    pre-activated input when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.short = nn.Conv2d(cin, cout, 1, stride, bias=False) if stride != 1 or cin != cout else None

    def forward(self, x):
        pre = F.relu(self.bn1(x))
        short = x if self.short is None else self.short(pre)
        return self.conv2(F.relu(self.bn2(self.conv1(pre)))) + short


class PreActResNet18(nn.Module):
    """PreAct-ResNet-18 for 32x32 inputs (3x3 stem, 4 stages x 2 pre-activation blocks, final BatchNorm + ReLU),
    ``width`` channels in the first stage (64 in the paper; 16 here keeps a CPU step near ResNet-20's)."""

    def __init__(self, classes: int = 10, width: int = 64):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        layers, cin = [], width
        for i, mult in enumerate((1, 2, 4, 8)):
            for j in range(2):
                layers.append(PreActBlock(cin, width * mult, 2 if i > 0 and j == 0 else 1))
                cin = width * mult
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(cin)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = F.relu(self.bn(self.layers(self.conv(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def preact_resnet18(classes: int = 10, width: int = 64) -> nn.Module:
    return PreActResNet18(classes, width)


class ResNet20(nn.Module):
    """ResNet-20 for CIFAR (He et al. 2016): 3 stages x 3 basic blocks, 16/32/64 channels, option-A shortcuts."""

    def __init__(self, classes: int = 10, widths=(16, 32, 64), blocks: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(widths[0])
        layers, cin = [], widths[0]
        for i, w in enumerate(widths):
            for j in range(blocks):
                layers.append(BasicBlock(cin, w, 2 if i > 0 and j == 0 else 1, projection=False))
                cin = w
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = self.layers(F.relu(self.bn(self.conv(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def resnet20(classes: int = 10) -> nn.Module:
    return ResNet20(classes)


def train_erm(x, y, epochs=15, seed=0, net=None, device="cpu"):
    """Plain (ERM) training with Adam; a LeNet-5 unless ``net`` is given."""
    torch.manual_seed(seed)
    net = (lenet5() if net is None else net).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    xt, yt = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt), 64):
            idx = order[i:i + 64]
            loss = torch.nn.functional.cross_entropy(net(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.cpu().eval()


def export(model: nn.Module, path, shape=(1, 1, 28, 28)) -> None:
    model.eval()
    torch.onnx.export(model, (torch.zeros(shape),), str(path), dynamo=False, opset_version=17,
                      input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}})
