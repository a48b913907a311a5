import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minidiff.schedules import (
    NoiseSchedule,
    cosine_beta_schedule,
    extract,
    linear_beta_schedule,
    make_schedule,
)


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_alphas_cumprod_monotone_in_unit_interval(name):
    s = make_schedule(name, 1000)
    a = s.alphas_cumprod
    assert a.shape == (1000,)
    assert bool(((a > 0) & (a < 1)).all())
    assert bool((a[1:] < a[:-1]).all()), "alphas_cumprod must strictly decrease"


def test_linear_endpoints_are_the_seeds_choice():
    b = linear_beta_schedule(1000)
    assert float(b[0]) == pytest.approx(1e-4)
    assert float(b[-1]) == pytest.approx(0.02)
    s = make_schedule("linear", 1000)
    # almost all signal is gone at the end (about 4e-5 of the variance is left)
    assert 1e-5 < float(s.alphas_cumprod[-1]) < 1e-4


def test_cosine_starts_near_one_and_ends_near_zero():
    s = make_schedule("cosine", 1000)
    assert float(s.alphas_cumprod[0]) > 0.9999
    assert float(s.alphas_cumprod[-1]) < 1e-6
    assert float(s.betas.max()) <= 0.999 + 1e-7


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_derived_quantities_follow_their_definitions(name):
    s = make_schedule(name, 200)
    b = s.betas.double()
    abar = torch.cumprod(1 - b, 0)
    abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
    torch.testing.assert_close(s.alphas_cumprod.double(), abar, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(s.alphas_cumprod_prev.double(), abar_prev, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(s.sqrt_alphas_cumprod.double() ** 2 + s.sqrt_one_minus_alphas_cumprod.double() ** 2,
                               torch.ones(200, dtype=torch.float64), atol=1e-6, rtol=0)
    torch.testing.assert_close(s.snr.double(), abar / (1 - abar), atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(s.posterior_variance.double(), b * (1 - abar_prev) / (1 - abar), atol=1e-7, rtol=1e-5)
    assert float(s.posterior_variance[0]) == 0.0  # x_0 is known exactly given x_1 and x_0


@settings(max_examples=60, deadline=None)
@given(
    T=st.integers(1, 2000),
    b0=st.floats(1e-6, 0.02),
    span=st.floats(0.0, 0.03),
)
def test_property_any_valid_linear_schedule(T, b0, span):
    # (ranges keep alphas_cumprod above float32's smallest normal number, ~1e-38)
    b1 = b0 + span
    s = NoiseSchedule.from_betas(linear_beta_schedule(T, b0, b1))
    a = s.alphas_cumprod
    assert s.T == T
    assert bool(((a > 0) & (a < 1)).all())
    assert bool((a[1:] <= a[:-1]).all())
    assert bool((s.posterior_variance >= 0).all())
    assert bool((s.posterior_variance <= s.betas + 1e-7).all())  # posterior is narrower than the forward step


@settings(max_examples=40, deadline=None)
@given(T=st.integers(1, 3000))
def test_property_cosine_any_T(T):
    s = make_schedule("cosine", T)
    a = s.alphas_cumprod
    assert bool(((a > 0) & (a < 1)).all())
    assert bool((a[1:] < a[:-1]).all())


@pytest.mark.parametrize("T", [0, -5, 2.5, True])
def test_bad_T_is_a_clear_error(T):
    with pytest.raises(ValueError, match="positive integer"):
        linear_beta_schedule(T)
    with pytest.raises(ValueError, match="positive integer"):
        cosine_beta_schedule(T)


@pytest.mark.parametrize("b0,b1", [(0.0, 0.02), (1e-4, 1.0), (-0.1, 0.5), (0.5, 1.5)])
def test_betas_outside_unit_interval_are_rejected(b0, b1):
    with pytest.raises(ValueError, match=r"open interval \(0, 1\)"):
        linear_beta_schedule(10, b0, b1)


def test_from_betas_names_the_bad_beta():
    betas = torch.full((10,), 0.1)
    betas[3] = 1.2
    with pytest.raises(ValueError, match=r"betas\[3\] = 1.2"):
        NoiseSchedule.from_betas(betas)
    with pytest.raises(ValueError, match="1-D"):
        NoiseSchedule.from_betas(torch.full((2, 3), 0.1))


def test_unknown_schedule_name():
    with pytest.raises(ValueError, match="unknown schedule 'quadratic'"):
        make_schedule("quadratic")


def test_extract_broadcasts_per_sample():
    v = torch.arange(10.0)
    out = extract(v, torch.tensor([1, 5, 9]), 4)
    assert out.shape == (3, 1, 1, 1)
    assert out.flatten().tolist() == [1.0, 5.0, 9.0]
