r"""Judging generated digits: a small digit classifier, class-conditional accuracy, and a Fréchet distance.

Fréchet distance between two sets of features with means mu_1, mu_2 and covariances S_1, S_2 (as in FID):
    d^2 = ||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^{1/2})
computed in the classifier's penultimate (128-d) features.
`frechet` = distance between N generated digits and the held-out real reference digits (never used to train a
generator); `frechet_floor` = the distance between N *real* training-split digits and that same reference: what a
perfect generator (or one that memorised its training set) scores.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .utils import check_image_batch


@dataclass
class ClassifierConfig:
    image_size: int = 16
    num_classes: int = 10
    width: int = 32
    feature_dim: int = 128

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ClassifierConfig:
        return cls(**d)


class DigitClassifier(nn.Module):
    """conv-conv-pool-conv-pool -> Linear(feature_dim) ("features") -> Linear(num_classes)."""

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
        x = check_image_batch(x, "images", channels=(1,))
        if x.shape[-1] != self.config.image_size or x.shape[-2] != self.config.image_size:
            raise ValueError(f"the classifier takes {self.config.image_size}x{self.config.image_size} digits, "
                             f"got {tuple(x.shape[-2:])}")
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def augment(x: torch.Tensor, generator: torch.Generator, max_shift: int = 1) -> torch.Tensor:
    """Random integer shifts of up to `max_shift` pixels (background -1 filled in)."""
    b = x.shape[0]
    out = torch.full_like(x, -1.0)
    p = max_shift
    padded = F.pad(x, (p, p, p, p), value=-1.0)
    sx = torch.randint(0, 2 * p + 1, (b,), generator=generator)
    sy = torch.randint(0, 2 * p + 1, (b,), generator=generator)
    h, w = x.shape[-2:]
    for i in range(b):
        out[i] = padded[i, :, sy[i]:sy[i] + h, sx[i]:sx[i] + w]
    return out


def train_classifier(x: torch.Tensor, y: torch.Tensor, steps: int = 1500, batch_size: int = 128, lr: float = 2e-3,
                     seed: int = 0, augment_shift: int = 1, progress: bool = True) -> DigitClassifier:
    """Train a DigitClassifier with Adam and cross-entropy on (x, y), with shift augmentation."""
    from tqdm.auto import tqdm

    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = DigitClassifier(ClassifierConfig(image_size=x.shape[-1]))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in tqdm(range(steps), desc="classifier", disable=not progress):
        idx = torch.randint(0, x.shape[0], (batch_size,), generator=g)
        xb = augment(x[idx], g, augment_shift) if augment_shift else x[idx]
        loss = F.cross_entropy(model(xb), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


@torch.no_grad()
def predict(classifier: DigitClassifier, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    return torch.cat([classifier(x[i:i + batch_size].float().cpu()).argmax(1) for i in range(0, len(x), batch_size)])


@torch.no_grad()
def features(classifier: DigitClassifier, x: torch.Tensor, batch_size: int = 512) -> np.ndarray:
    return torch.cat([classifier.features(x[i:i + batch_size].float().cpu()) for i in range(0, len(x), batch_size)]
                     ).double().numpy()


def class_accuracy(classifier: DigitClassifier, x: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of images the classifier assigns to the class they were generated (or labelled) as."""
    return float((predict(classifier, x) == labels.cpu()).float().mean())


def frechet_distance(f1: np.ndarray, f2: np.ndarray) -> float:
    """||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^{1/2}) between two feature sets (N_i, D)."""
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    # Tr((S1 S2)^(1/2)) = Tr((A S2 A)^(1/2)) with A = S1^(1/2): a symmetric PSD matrix, stable even if S1 is singular
    w, v = np.linalg.eigh(s1)
    a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh(a @ s2 @ a), 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)


def evaluate_digits(classifier: DigitClassifier, samples: torch.Tensor, labels: torch.Tensor,
                    floor_repeats: int = 5) -> dict:
    """class_accuracy, frechet (samples vs the held-out reference digits) and frechet_floor (N real training-split
    digits vs the same reference, averaged over `floor_repeats` random subsets; their min and max are reported too,
    since at small N the distance itself is noisy). Both distances use N = len(samples) (at most 899).
    """
    from .data import load_digits

    ref, _ = load_digits(16, split="reference")
    real, _ = load_digits(16, split="train")
    n = samples.shape[0]
    if n > len(real):
        raise ValueError(f"at most {len(real)} samples can be compared with the real floor, got {n}")
    f_ref = features(classifier, ref)
    f_gen = features(classifier, samples.clamp(-1, 1))
    f_real = features(classifier, real)
    floors = [frechet_distance(f_real[torch.randperm(len(real), generator=torch.Generator().manual_seed(s))[:n]],
                               f_ref) for s in range(floor_repeats)]
    return {
        "class_accuracy": round(class_accuracy(classifier, samples.clamp(-1, 1), labels), 4),
        "frechet": round(frechet_distance(f_gen, f_ref), 3),
        "frechet_floor": round(float(np.mean(floors)), 3),
        "frechet_floor_range": [round(min(floors), 3), round(max(floors), 3)],
        "n_samples": n,
        "n_reference": len(ref),
    }


def benchmark_records(name: str) -> list[dict]:
    """The committed benchmark records benchmarks/results/NAME.json of this checkout (for the lessons' tables)."""
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"no benchmark results at {path}; run python benchmarks/{name}.py from the project "
                                "root (minidiff must be installed from a checkout: pip install -e .)")
    return json.loads(path.read_text())
