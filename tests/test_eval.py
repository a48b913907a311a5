import numpy as np
import pytest
import torch

from minidiff.eval import (
    augment,
    class_accuracy,
    evaluate_digits,
    frechet_distance,
)
from minidiff.models.classifier import ClassifierConfig, DigitClassifier


def test_frechet_distance_known_values():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 3))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    b = a + np.array([2.0, 0.0, 0.0])  # a pure mean shift of 2 -> distance 4
    assert frechet_distance(a, b) == pytest.approx(4.0, rel=1e-6)
    c = a * 2.0  # covariance 4I vs I: Tr(I + 4I - 2*2I) = 3 per ... = 3 * (1 + 4 - 4) = 3
    assert frechet_distance(a, c) == pytest.approx(3.0 * np.var(a, axis=0, ddof=1).mean(), rel=0.05)
    singular = np.zeros((100, 3))
    singular[:, 0] = rng.normal(size=100)  # rank-1 covariance: no warning, finite
    assert np.isfinite(frechet_distance(singular, a))


def test_digit_splits_are_fixed_disjoint_and_cover_everything():
    from minidiff.data import digit_split_indices, load_digits

    tr1, ref1 = digit_split_indices()
    tr2, ref2 = digit_split_indices()
    assert torch.equal(tr1, tr2) and torch.equal(ref1, ref2)
    assert not set(tr1.tolist()) & set(ref1.tolist()) and len(tr1) + len(ref1) == 1797
    x, y = load_digits(16)
    xt, yt = load_digits(16, split="train")
    xr, _ = load_digits(16, split="reference")
    assert torch.equal(xt, x[tr1]) and torch.equal(yt, y[tr1]) and torch.equal(xr, x[ref1])
    assert sorted(set(yt.tolist())) == list(range(10))
    with pytest.raises(ValueError, match="split must be one of"):
        load_digits(16, split="test")


def test_classifier_shapes_errors_and_augment():
    m = DigitClassifier(ClassifierConfig())
    assert m(torch.randn(5, 1, 16, 16)).shape == (5, 10)
    assert m.features(torch.randn(5, 1, 16, 16)).shape == (5, 128)
    with pytest.raises(ValueError, match="16x16"):
        m(torch.randn(2, 1, 8, 8))
    with pytest.raises(ValueError, match="channels"):
        m(torch.randn(2, 3, 16, 16))
    x = torch.full((3, 1, 4, 4), -1.0)
    x[:, :, 1:3, 1:3] = 1.0
    y = augment(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and float(y.sum()) == float(x.sum())  # shifts move the blob, never lose it


def test_evaluate_digits_on_real_digits_reaches_the_floor():
    from minidiff.data import load_digits
    from minidiff.pretrained import load_pretrained

    judge, card = load_pretrained("digit-classifier")
    assert card["metrics"]["held_out_accuracy"] > 0.97
    x, y = load_digits(16, split="train")
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:300]
    r = evaluate_digits(judge, x[idx], y[idx])
    assert r["class_accuracy"] > 0.97
    lo, hi = r["frechet_floor_range"]
    assert lo <= r["frechet"] <= hi  # real digits score within the floor's own spread
    other = evaluate_digits(judge, x[-300:], y[-300:])
    assert other["frechet"] < 1.5 * other["frechet_floor"]
    noise = torch.rand(300, 1, 16, 16) * 2 - 1
    bad = evaluate_digits(judge, noise, y[:300])
    assert bad["frechet"] > 5 * bad["frechet_floor"] and bad["class_accuracy"] < 0.5
    assert class_accuracy(judge, x[:50], (y[:50] + 1) % 10) < 0.1  # wrong labels are caught
