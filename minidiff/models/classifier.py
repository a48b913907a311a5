"""The digit classifier that judges generated digits and videos (lessons 02-08; trained in `minidiff.eval`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from ..checks import check_float_tensor, check_image_batch
from ..config import Config


@dataclass
class ClassifierConfig(Config):
    """The digit classifier: input size, classes, conv width and feature size."""

    image_size: int = 16
    num_classes: int = 10
    width: int = 32
    feature_dim: int = 128


class DigitClassifier(nn.Module):
    """The judge of generated digits: images (B, 1, image_size, image_size) in [-1, 1] -> logits (B, num_classes).

    conv-conv-pool-conv-pool -> Linear(feature_dim) (`features`, used by the Fréchet distance) -> Linear(num_classes).
    Trained by `minidiff.eval.train_classifier`."""

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        self.config = c = config
        w = c.width
        self.body = nn.Sequential(
            nn.Conv2d(1, w, 3, padding=1), nn.ReLU(), nn.Conv2d(w, w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(2 * w * (c.image_size // 4) ** 2, c.feature_dim), nn.ReLU(),
        )
        self.head = nn.Linear(c.feature_dim, c.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = check_float_tensor("images", check_image_batch(x, "images", channels=(1,)), finite=True)
        if x.shape[-1] != self.config.image_size or x.shape[-2] != self.config.image_size:
            raise ValueError(f"the classifier takes {self.config.image_size}x{self.config.image_size} digits, "
                             f"got {tuple(x.shape[-2:])}")
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
