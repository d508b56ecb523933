"""The field's reference FIQA backbones, from their published definitions, for speed
comparison only (random weights: speed does not depend on the weights).

- iResNet-50 and iResNet-100 (insightface ``iresnet.py``; the backbones of CR-FIQA and
  MagFace), 112x112 input, 512-d output.
- MobileFaceNet (the backbone of eDifFIQA-T), 112x112 input.
"""

from __future__ import annotations

import torch.nn as nn

from facegate.recognition import MobileFaceNet


def _conv3x3(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=False)


class IBasicBlock(nn.Module):
    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-5)
        self.conv1 = _conv3x3(inplanes, planes)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-5)
        self.prelu = nn.PReLU(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-5)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes, eps=1e-5))

    def forward(self, x):
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (x if self.downsample is None else self.downsample(x))


class IResNet(nn.Module):
    """``(B, 3, 112, 112)`` -> ``(B, 512)``."""

    def __init__(self, layers, num_features=512):
        super().__init__()
        self.conv1 = _conv3x3(3, 64)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-5)
        self.prelu = nn.PReLU(64)
        blocks, inplanes = [], 64
        for planes, count in zip((64, 128, 256, 512), layers):
            blocks.append(IBasicBlock(inplanes, planes, 2))
            blocks += [IBasicBlock(planes, planes) for _ in range(count - 1)]
            inplanes = planes
        self.layers = nn.Sequential(*blocks)
        self.bn2 = nn.BatchNorm2d(512, eps=1e-5)
        self.fc = nn.Linear(512 * 7 * 7, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=1e-5)

    def forward(self, x):
        x = self.layers(self.prelu(self.bn1(self.conv1(x))))
        return self.features(self.fc(self.bn2(x).flatten(1)))


REFERENCES = {
    "MobileFaceNet (eDifFIQA-T backbone)": lambda: MobileFaceNet(input_size=(112, 112)),
    "iResNet-50 (CR-FIQA, MagFace)": lambda: IResNet((3, 4, 14, 3)),
    "iResNet-100 (CR-FIQA, MagFace)": lambda: IResNet((3, 13, 30, 3)),
}
