"""MobileFaceNet (Chen et al. 2018, "MobileFaceNets") in PyTorch, with the layer names of
the checkpoint described in ``../shared/models/README.md``, so that checkpoint loads
strictly. facegate does not ship its weights; a caller passes the path. Needs the ``torch``
extra; :mod:`facegate.recognition` is the torch-free way in.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from .alignment import MOBILEFACENET_TEMPLATE, warp_to_template
from .errors import WeightsError

__all__ = ["MobileFaceNet", "MobileFaceNetRecognizer", "STAGE_CHANNELS", "STAGE_NAMES"]

#: (expansion t, channels c, repeats n, first stride s) of each bottleneck stage.
MOBILEFACENET_SETTING = ((2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1))


class _ConvBlock(nn.Module):
    def __init__(self, inp, oup, kernel, stride, padding, depthwise=False, linear=False):
        super().__init__()
        self.conv = nn.Conv2d(inp, oup, kernel, stride, padding, groups=inp if depthwise else 1, bias=False)
        self.bn = nn.BatchNorm2d(oup)
        self.prelu = None if linear else nn.PReLU(oup)

    def forward(self, x):
        x = self.bn(self.conv(x))
        return x if self.prelu is None else self.prelu(x)


class _Bottleneck(nn.Module):
    def __init__(self, inp, oup, stride, expansion):
        super().__init__()
        hidden = inp * expansion
        self.connect = stride == 1 and inp == oup
        self.conv = nn.Sequential(
            nn.Conv2d(inp, hidden, 1, 1, 0, bias=False),
            nn.BatchNorm2d(hidden),
            nn.PReLU(hidden),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.PReLU(hidden),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        )

    def forward(self, x):
        return x + self.conv(x) if self.connect else self.conv(x)


class MobileFaceNet(nn.Module):
    """``(B, 3, 112, 96)`` RGB scaled as ``(x - 127.5) / 128`` -> ``(B, 128)`` embedding.

    Args:
        input_size: ``(height, width)``; the global depthwise layer spans the final
            ``(height/16, width/16)`` map (7x6 for the shared checkpoint, 7x7 at 112x112).
    """

    def __init__(self, input_size: tuple[int, int] = (112, 96)):
        super().__init__()
        self.conv1 = _ConvBlock(3, 64, 3, 2, 1)
        self.dw_conv1 = _ConvBlock(64, 64, 3, 1, 1, depthwise=True)
        layers, channels = [], 64
        for t, c, n, s in MOBILEFACENET_SETTING:
            for i in range(n):
                layers.append(_Bottleneck(channels, c, s if i == 0 else 1, t))
                channels = c
        self.blocks = nn.Sequential(*layers)
        self.conv2 = _ConvBlock(128, 512, 1, 1, 0)
        grid = (input_size[0] // 16, input_size[1] // 16)
        self.linear7 = _ConvBlock(512, 512, grid, 1, 0, depthwise=True, linear=True)
        self.linear1 = _ConvBlock(512, 128, 1, 1, 0, linear=True)

    def stages(self) -> list[tuple[str, nn.Module]]:
        """The network as named stages in forward order (names in :data:`STAGE_NAMES`);
        :meth:`forward` runs them, and the FROQ observer taps them."""
        return ([("conv1", self.conv1), ("dw_conv1", self.dw_conv1)]
                + [(f"blocks.{i}", block) for i, block in enumerate(self.blocks)]
                + [("conv2", self.conv2), ("linear7", self.linear7), ("embedding", self.linear1)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _, stage in self.stages():
            x = stage(x)
        return x.flatten(1)


def _stage_channels() -> dict[str, int]:
    channels = {"conv1": 64, "dw_conv1": 64}
    k = 0
    for _, c, n, _ in MOBILEFACENET_SETTING:
        for _ in range(n):
            channels[f"blocks.{k}"] = c
            k += 1
    return {**channels, "conv2": 512, "linear7": 512, "embedding": 128}


#: Output channels of each stage of :class:`MobileFaceNet`, in forward order.
STAGE_CHANNELS: dict[str, int] = _stage_channels()
STAGE_NAMES: tuple[str, ...] = tuple(STAGE_CHANNELS)


class MobileFaceNetRecognizer:
    """Aligns, embeds (image and its mirror, concatenated: 256-d) and L2-normalises.

    Args:
        checkpoint: path to the MobileFaceNet checkpoint (``{"net_state_dict": ...}``).
        device: torch device.
        batch_size: faces per forward pass.
    """

    def __init__(self, checkpoint: str, *, device: str = "cpu", batch_size: int = 64):
        try:
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        except Exception:  # (torch's own text advises weights_only=False: unsafe for a file of unknown origin)
            raise WeightsError(f"{checkpoint}: not a recognizer checkpoint (expected a MobileFaceNet state dict "
                               "saved by torch.save, or give module:factory for your own recognizer)") from None
        state = state.get("net_state_dict", state) if isinstance(state, dict) else state
        self.net = MobileFaceNet()
        try:
            self.net.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise WeightsError(f"{checkpoint}: not a MobileFaceNet checkpoint ({exc})") from None
        self.device = torch.device(device)
        self.net.eval().to(self.device)
        self.batch_size = batch_size

    @staticmethod
    def align(rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """``(112, 96, 3)`` uint8 crop on the MobileFaceNet template."""
        return warp_to_template(rgb, landmarks, MOBILEFACENET_TEMPLATE, (96, 112))

    def to_input(self, crops: np.ndarray) -> torch.Tensor:
        """``(B, 112, 96, 3)`` uint8 -> ``(B, 3, 112, 96)`` float on the device, scaled as
        MobileFaceNet expects."""
        x = torch.from_numpy(np.ascontiguousarray(crops)).to(self.device)
        return (x.permute(0, 3, 1, 2).float() - 127.5) / 128.0

    def embed_aligned(self, crops: np.ndarray) -> np.ndarray:
        """``(N, 112, 96, 3)`` uint8 aligned RGB crops -> ``(N, 256)`` unit vectors."""
        out = []
        with torch.inference_mode():
            for start in range(0, len(crops), self.batch_size):
                x = self.to_input(crops[start : start + self.batch_size])
                emb = torch.cat([self.net(x), self.net(x.flip(3))], 1)
                out.append(nn.functional.normalize(emb, dim=1).cpu().numpy())
        return np.concatenate(out, 0) if out else np.zeros((0, 256), np.float32)

    def embed(self, images: Sequence[np.ndarray], landmarks: Sequence[np.ndarray]) -> np.ndarray:
        crops = np.stack([self.align(img, lm) for img, lm in zip(images, landmarks)])
        return self.embed_aligned(crops)
