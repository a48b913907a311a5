import numpy as np
import pytest
import torch

import minidiff
from minidiff.checks import check_image_batch
from minidiff.data import load_digits, load_photo
from minidiff.viz import image_grid, to_numpy_image


@pytest.mark.parametrize("size", [8, 16, 32])
def test_digits_shape_range_labels(size):
    x, y = load_digits(size)
    assert x.shape == (1797, 1, size, size) and x.dtype == torch.float32
    assert float(x.min()) == -1.0 and float(x.max()) <= 1.0 and float(x.max()) > 0.9
    assert y.dtype == torch.long and sorted(set(y.tolist())) == list(range(10))


def test_digits_bad_size():
    with pytest.raises(ValueError, match="size must be one of"):
        load_digits(20)


def test_photo_is_a_real_image_in_range():
    p = load_photo(64)
    assert p.shape == (3, 64, 64)
    assert -1 <= float(p.min()) < -0.5 and 0.5 < float(p.max()) <= 1
    assert float(p.std()) > 0.2  # a photo, not a flat image
    assert load_photo(32, gray=True).shape == (1, 32, 32)
    with pytest.raises(ValueError, match="size must be an int"):
        load_photo(0)


def test_wrong_layout_is_a_clear_error():
    with pytest.raises(ValueError, match="channels-last"):
        check_image_batch(torch.zeros(2, 16, 16, 3))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        check_image_batch(torch.zeros(16, 16))
    with pytest.raises(ValueError, match="channels-last"):
        to_numpy_image(torch.zeros(16, 16, 3))
    with pytest.raises(ValueError, match="torch.Tensor"):
        check_image_batch(np.zeros((1, 3, 4, 4)))


def test_image_grid_tiles_and_maps_range():
    x = torch.stack([torch.full((1, 4, 4), v) for v in (-1.0, 0.0, 1.0)])
    g = image_grid(x, nrow=3, padding=1)
    assert g.shape == (6, 16)
    assert g[1, 1] == 0.0 and g[1, 6] == 0.5 and g[1, 11] == 1.0


def test_seed_everything_gives_identical_draws():
    minidiff.seed_everything(123)
    a = torch.randn(5)
    g = minidiff.seed_everything(123)
    b = torch.randn(5)
    assert torch.equal(a, b)
    assert torch.equal(torch.randn(3, generator=g), torch.randn(3, generator=torch.Generator().manual_seed(123)))
    with pytest.raises(ValueError):
        minidiff.seed_everything(1.5)


def test_device_and_fast_mode(monkeypatch):
    assert isinstance(minidiff.device(), torch.device)
    monkeypatch.setenv("MINIDIFF_FAST", "1")
    assert minidiff.fast_mode()
    monkeypatch.setenv("MINIDIFF_FAST", "0")
    assert not minidiff.fast_mode()
