"""Interactive widgets, one builder per widget.

Each callback body is a pure function (`*_frame`) that tests call directly; the builder only wires ipywidgets
controls to it and draws what it returns.
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch

from .ddpm import q_sample
from .schedules import SCHEDULES, NoiseSchedule, make_schedule
from .utils import check_image_batch
from .viz import to_numpy_image

# --------------------------------------------------------------------------------------------- noising explorer


@dataclass
class NoisingFrame:
    """What the noising explorer shows for one (schedule, t)."""

    t: int
    schedule: str
    image: np.ndarray  # x_t for imshow, clipped to [0, 1]
    hist_density: np.ndarray  # pixel histogram of x_t (density), len = bins
    hist_edges: np.ndarray  # len = bins + 1
    gauss_x: np.ndarray  # where N(0, 1)'s density is drawn
    gauss_pdf: np.ndarray
    pixel_mean: float
    pixel_std: float
    signal_coef: float  # sqrt(alphas_cumprod_t)
    noise_coef: float  # sqrt(1 - alphas_cumprod_t)
    log10_snr: np.ndarray  # the whole curve, len T
    snr_t: float

    @property
    def title(self) -> str:
        return (
            f"{self.schedule}, t={self.t}: x_t = {self.signal_coef:.3f}·x0 + {self.noise_coef:.3f}·ε,"
            f" SNR={self.snr_t:.3g}"
        )


def noising_explorer_frame(
    image: torch.Tensor,
    schedule: NoiseSchedule,
    t: int,
    noise: torch.Tensor,
    bins: int = 60,
    value_range: float = 4.0,
) -> NoisingFrame:
    """Noise `image` to step t with fixed `noise` and summarise it: the picture, its pixel histogram vs N(0, 1), SNR."""
    x0 = check_image_batch(image, "image")[:1]
    if not 0 <= int(t) < schedule.T:
        raise ValueError(f"t={t} is out of range for a schedule with T={schedule.T} steps (valid: 0..{schedule.T - 1})")
    t = int(t)
    xt = q_sample(schedule, x0, t, noise.reshape(x0.shape))
    pixels = xt.flatten().double().numpy()
    dens, edges = np.histogram(pixels, bins=bins, range=(-value_range, value_range), density=True)
    gx = np.linspace(-value_range, value_range, 201)
    return NoisingFrame(
        t=t,
        schedule=schedule.name,
        image=to_numpy_image(xt),
        hist_density=dens,
        hist_edges=edges,
        gauss_x=gx,
        gauss_pdf=np.exp(-0.5 * gx**2) / np.sqrt(2 * np.pi),
        pixel_mean=float(pixels.mean()),
        pixel_std=float(pixels.std()),
        signal_coef=float(schedule.sqrt_alphas_cumprod[t]),
        noise_coef=float(schedule.sqrt_one_minus_alphas_cumprod[t]),
        log10_snr=np.log10(schedule.snr.double().numpy()),
        snr_t=float(schedule.snr[t]),
    )


def draw_noising_frame(frame: NoisingFrame, axes: tuple[plt.Axes, plt.Axes, plt.Axes]) -> None:
    """Draw a NoisingFrame on three axes: image, histogram vs N(0, 1), log-SNR curve with a marker at t."""
    a0, a1, a2 = axes
    a0.imshow(frame.image, cmap="gray" if frame.image.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    a0.set_axis_off()
    a0.set_title(f"x_t at t={frame.t}")
    centres = (frame.hist_edges[:-1] + frame.hist_edges[1:]) / 2
    a1.bar(centres, frame.hist_density, width=np.diff(frame.hist_edges), color="tab:blue", alpha=0.6, label="pixels")
    a1.plot(frame.gauss_x, frame.gauss_pdf, "k--", label="N(0, 1)")
    a1.set_title(f"pixel values: mean {frame.pixel_mean:.2f}, std {frame.pixel_std:.2f}")
    a1.legend(loc="upper right")
    a2.plot(np.arange(len(frame.log10_snr)), frame.log10_snr, color="tab:orange")
    a2.plot([frame.t], [np.log10(frame.snr_t)], "o", color="k")
    a2.axhline(0, color="gray", lw=0.8, ls="--")
    a2.set_xlabel("t")
    a2.set_title("log10 SNR(t)")


def noising_explorer(image: torch.Tensor, T: int = 1000, seed: int = 0):
    """A slider over t and a schedule dropdown: the noised image, its histogram against N(0, 1), the SNR curve.

    The noise is drawn once (from `seed`), so moving the slider shows the same image getting noisier.
    """
    import ipywidgets as W

    x0 = check_image_batch(image, "image")[:1]
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    schedules = {name: make_schedule(name, T) for name in SCHEDULES}
    t_slider = W.IntSlider(value=T // 4, min=0, max=T - 1, step=1, description="t", continuous_update=False,
                           layout=W.Layout(width="60%"))
    dropdown = W.Dropdown(options=list(SCHEDULES), value="linear", description="schedule")
    out = W.Output()

    def render(t: int, schedule: str) -> None:
        frame = noising_explorer_frame(x0, schedules[schedule], t, noise)
        with out:
            out.clear_output(wait=True)
            fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
            draw_noising_frame(frame, axes)
            fig.suptitle(frame.title, fontsize=10)
            fig.tight_layout()
            plt.show()

    def on_change(_change=None) -> None:
        render(t_slider.value, dropdown.value)

    t_slider.observe(on_change, names="value")
    dropdown.observe(on_change, names="value")
    on_change()
    return W.VBox([W.HBox([t_slider, dropdown]), out])
