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


def test_the_floor_is_a_floor_for_real_digits_and_below_degraded_ones():
    from minidiff.data import load_digits
    from minidiff.pretrained import load_pretrained

    judge, card = load_pretrained("digit-classifier")
    assert card["metrics"]["held_out_split"] == "reference" and card["metrics"]["held_out_accuracy"] > 0.97
    x, y = load_digits(16, split="train")
    labels = torch.arange(10).repeat_interleave(50)
    # class-matched sets of real digits drawn with seeds the floor does not use score the floor, on average
    scores = []
    for seed in range(1000, 1010):
        g = torch.Generator().manual_seed(seed)
        idx = torch.cat([(y == k).nonzero().squeeze(1)[torch.randperm(int((y == k).sum()), generator=g)[:50]]
                         for k in range(10)])
        r = evaluate_digits(judge, x[idx], labels)
        scores.append(r["frechet"])
        assert r["class_accuracy"] > 0.97 and r["floor_draws"] == 20 and r["n_samples"] == 500
    assert r["frechet_floor_std"] > 0  # both means are noisy: the bound is 3 standard errors of their difference
    assert abs(np.mean(scores) - r["frechet_floor"]) < 3 * r["frechet_floor_std"] * np.sqrt(1 / len(scores) + 1 / 20)
    # slightly degraded real digits (noise of std 0.25) sit above the floor, well beyond its spread
    noisy = (x[idx] + 0.25 * torch.randn(x[idx].shape, generator=g)).clamp(-1, 1)
    worse = evaluate_digits(judge, noisy, labels)
    assert worse["frechet"] > worse["frechet_floor"] + 5 * worse["frechet_floor_std"]
    noise = torch.rand(500, 1, 16, 16) * 2 - 1
    bad = evaluate_digits(judge, noise, labels)
    assert bad["frechet"] > 5 * bad["frechet_floor"] and bad["class_accuracy"] < 0.5
    assert class_accuracy(judge, x[:50], (y[:50] + 1) % 10) < 0.1  # wrong labels are caught


def test_the_floor_matches_class_counts_and_n():
    from minidiff.eval import frechet_floor
    from minidiff.pretrained import load_pretrained

    judge, _ = load_pretrained("digit-classifier")
    balanced = frechet_floor(judge, torch.arange(10).repeat_interleave(50), draws=5)
    one_class = frechet_floor(judge, torch.zeros(50, dtype=torch.long), draws=5)
    assert len(balanced) == 5 and len(set(balanced)) == 5  # different draws
    assert min(one_class) > 5 * max(balanced)  # 50 zeros against all ten digits: the counts are honoured
    small = frechet_floor(judge, torch.arange(10).repeat_interleave(10), draws=5)
    assert min(small) > max(balanced)  # the distance grows as N shrinks: compare only at equal N
    with pytest.raises(ValueError, match="samples per class"):
        frechet_floor(judge, torch.zeros(200, dtype=torch.long))
    with pytest.raises(ValueError, match="labels"):
        evaluate_digits(judge, torch.zeros(3, 1, 16, 16), torch.zeros(4, dtype=torch.long))
    for bad in (torch.tensor([3, 10]), torch.tensor([-1, 2]), torch.zeros(4), torch.zeros(2, 2, dtype=torch.long),
                torch.zeros(0, dtype=torch.long)):
        with pytest.raises(ValueError, match="labels must be"):
            frechet_floor(judge, bad)
    with pytest.raises(ValueError, match="draws"):
        frechet_floor(judge, torch.arange(10), draws=1)


def test_with_spread_formats_one_run_without_a_spread():
    from minidiff.eval import with_spread

    assert with_spread({"frechet": 52.1, "frechet_std": 5.3}, "frechet", 1) == "52.1 ± 5.3"
    assert with_spread({"frechet": 47.1, "frechet_std": None}, "frechet", 1) == "47.1 (1 run)"
    with pytest.raises(KeyError, match="no 'fid'"):
        with_spread({"frechet": 1.0}, "fid")


def test_the_judge_recipe_never_sees_the_reference_split(monkeypatch):
    from minidiff import recipes
    from minidiff.data import load_digits

    seen, real_train = {}, recipes.images.train_classifier

    def fake_train(x, y, **kw):
        seen["x"], seen["y"] = x, y
        return real_train(x[:64], y[:64], steps=2, progress=False)

    monkeypatch.setattr(recipes.images, "train_classifier", fake_train)
    monkeypatch.setattr(recipes.images, "save_pretrained", lambda *a, **k: None)
    card = recipes.digit_classifier(progress=False).card
    x_train, y_train = load_digits(16, split="train")
    assert torch.equal(seen["x"], x_train) and torch.equal(seen["y"], y_train)
    assert card["metrics"]["held_out_n"] == len(load_digits(16, split="reference")[1])


def test_digit_confusion_counts_asked_by_read_and_skips_videos_without_ink():
    import matplotlib

    matplotlib.use("Agg")
    import pytest
    import torch

    from minidiff.eval import digit_confusion
    from minidiff.viz import plot_confusion

    conf = digit_confusion(torch.tensor([3, 3, 7, 1]), torch.tensor([3, 8, -1, 1]))
    assert conf.shape == (10, 10) and int(conf.sum()) == 3          # the -1 (no ink) counts nowhere
    assert conf[3, 3] == 1 and conf[3, 8] == 1 and conf[1, 1] == 1 and int(conf[7].sum()) == 0
    ax = plot_confusion(conf, misses_only=True)
    assert [t.get_text() for t in ax.texts] == ["1"]                 # only the one miss is written
    with pytest.raises(ValueError, match="10 x 10"):
        plot_confusion([[1, 2], [3, 4]])
