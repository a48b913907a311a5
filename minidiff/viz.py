"""Plots: image grids, noising strips, schedule and SNR curves.

Images come in the package's layout, (B, C, H, W) or (C, H, W), values in [-1, 1].
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from .checks import check_image_batch
from .ddpm import q_sample
from .schedules import NoiseSchedule


def to_numpy_image(x: torch.Tensor) -> np.ndarray:
    """One image (C, H, W) in [-1, 1] -> a NumPy array for imshow in [0, 1]: (H, W) for C = 1, (H, W, 3) for C = 3."""
    x = check_image_batch(x)
    if x.shape[0] != 1:
        raise ValueError(f"to_numpy_image takes one image, got a batch of {x.shape[0]}")
    img = ((x[0].detach().float().cpu().clamp(-1, 1) + 1) / 2).numpy()
    return img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)


def image_grid(x: torch.Tensor, nrow: int = 8, padding: int = 1) -> np.ndarray:
    """Tile a batch (B, C, H, W) in [-1, 1] into one array for imshow ((H', W') or (H', W', 3)) in [0, 1]."""
    x = check_image_batch(x).detach().float().cpu().clamp(-1, 1)
    b, c, h, w = x.shape
    nrow = max(1, min(nrow, b))
    ncol = (b + nrow - 1) // nrow
    grid = torch.ones(c, ncol * (h + padding) + padding, nrow * (w + padding) + padding)
    for i in range(b):
        r, q = divmod(i, nrow)
        top, left = padding + r * (h + padding), padding + q * (w + padding)
        grid[:, top : top + h, left : left + w] = (x[i] + 1) / 2
    g = grid.numpy()
    return g[0] if c == 1 else g.transpose(1, 2, 0)


def show_images(
    x: torch.Tensor,
    nrow: int = 8,
    title: str | None = None,
    ax: plt.Axes | None = None,
    scale: float = 0.6,
) -> plt.Axes:
    """Show a batch of images as one grid (gray colormap for one channel); returns the axes."""
    grid = image_grid(x, nrow=nrow)
    if ax is None:
        h, w = grid.shape[:2]
        _, ax = plt.subplots(figsize=(max(2.0, scale * w / 10), max(2.0, scale * h / 10)))
    ax.imshow(grid, cmap="gray" if grid.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax


def plot_noising_strip(
    image: torch.Tensor,
    schedule: NoiseSchedule,
    ts: Sequence[int],
    noise: torch.Tensor | None = None,
    axes: Sequence[plt.Axes] | None = None,
    label: str | None = None,
) -> Sequence[plt.Axes]:
    """One image noised to each timestep in `ts` with the same noise (closed form q(x_t | x_0)), side by side."""
    x0 = check_image_batch(image, "image")[:1]
    if noise is None:
        noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    noise = check_image_batch(noise, "noise")[:1]
    if noise.shape != x0.shape:
        raise ValueError(f"noise must have the image's shape {tuple(x0.shape[1:])}, got {tuple(noise.shape[1:])}")
    if axes is None:
        _, axes = plt.subplots(1, len(ts), figsize=(1.6 * len(ts), 1.9))
    for ax, t in zip(axes, ts, strict=True):
        xt = q_sample(schedule, x0, noise, int(t))
        img = to_numpy_image(xt)
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"t={t}", fontsize=9)
        ax.set_axis_off()
    if label:
        axes[0].text(-0.15, 0.5, label, transform=axes[0].transAxes, rotation=90, va="center", ha="right")
    return axes


def plot_schedules(schedules: Sequence[NoiseSchedule], axes: Sequence[plt.Axes] | None = None) -> Sequence[plt.Axes]:
    """Three panels per schedule: beta_t, alphas_cumprod (signal kept) and log10 SNR, against t."""
    if axes is None:
        _, axes = plt.subplots(1, 3, figsize=(13, 3.2))
    for s in schedules:
        t = np.arange(s.T)
        axes[0].plot(t, s.betas.cpu().numpy(), label=s.name)
        axes[1].plot(t, s.alphas_cumprod.cpu().numpy(), label=s.name)
        axes[2].plot(t, np.log10(s.snr.cpu().numpy()), label=s.name)
    axes[0].set_title(r"$\beta_t$")
    axes[1].set_title(r"$\bar\alpha_t$ (signal variance kept)")
    axes[2].set_title(r"$\log_{10}\,\mathrm{SNR}(t) = \log_{10} \bar\alpha_t / (1-\bar\alpha_t)$")
    axes[2].axhline(0, color="gray", lw=0.8, ls="--")
    for ax in axes:
        ax.set_xlabel("t")
        ax.legend()
    return axes


# ------------------------------------------------------------------------------------------------------- videos


def _check_videos(videos: torch.Tensor) -> torch.Tensor:
    if videos.ndim == 4:
        videos = videos[None]
    if videos.ndim != 5 or videos.shape[1] not in (1, 3):
        raise ValueError(f"expected videos (B, C, T, H, W) or one video (C, T, H, W) with C = 1 or 3, got shape "
                         f"{tuple(videos.shape)}")
    return videos.detach().float().cpu().clamp(-1, 1)


def video_frames_grid(videos: torch.Tensor, padding: int = 1) -> np.ndarray:
    """Videos (B, C, T, H, W) in [-1, 1] -> one array for imshow: a row per video, a column per frame."""
    v = _check_videos(videos)
    b, c, t, h, w = v.shape
    return image_grid(v.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w), nrow=t, padding=padding)


def video_frames_figsize(videos: torch.Tensor, scale: float = 0.45) -> tuple[float, float]:
    """The figure size (inches) that `show_video_frames` gives these videos."""
    n, _, t, h, w = _check_videos(videos).shape
    return max(3.0, scale * (t * (w + 1) + 1) / 10), max(1.2, scale * (n * (h + 1) + 1) / 10)


def show_video_frames(videos: torch.Tensor, title: str | None = None, row_labels: Sequence[str] | None = None,
                      ax: plt.Axes | None = None, scale: float = 0.45) -> plt.Axes:
    """Every frame of each video side by side (time runs left to right); optional labels on the rows."""
    v = _check_videos(videos)
    grid = video_frames_grid(v)
    if ax is None:
        _, ax = plt.subplots(figsize=video_frames_figsize(v, scale))
    ax.imshow(grid, cmap="gray" if grid.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_visible(False)
    if row_labels is not None:
        size = v.shape[-2] + 1
        ax.set_yticks([1 + size * i + v.shape[-2] / 2 for i in range(len(row_labels))], list(row_labels), fontsize=8)
    if title:
        ax.set_title(title)
    return ax


def plot_confusion(confusion, ax: plt.Axes | None = None, misses_only: bool = False,
                   title: str | None = None) -> plt.Axes:
    """A 10 x 10 digit confusion (rows: the digit asked for, columns: the digit read, as `eval.digit_confusion`)
    as an image with its counts written in; `misses_only` writes only the off-diagonal ones."""
    conf = np.asarray(confusion)
    if conf.shape != (10, 10):
        raise ValueError(f"confusion must be 10 x 10 (asked for x read), got shape {conf.shape}")
    if ax is None:
        _, ax = plt.subplots(figsize=(4.2, 3.8))
    ax.imshow(conf, cmap="Blues")
    for a in range(10):
        for b in range(10):
            if conf[a, b] and not (misses_only and a == b):
                dark = conf[a, b] > conf.max() / 2
                ax.text(b, a, int(conf[a, b]), ha="center", va="center", fontsize=7, color="w" if dark else "k")
    ax.set_xticks(range(10))
    ax.set_yticks(range(10))
    ax.set_xlabel("digit the judge reads")
    ax.set_ylabel("digit asked for")
    if title:
        ax.set_title(title, fontsize=9)
    return ax


class VideoAnimation:
    """A looping GIF, shown by Jupyter as an image (an `image/gif` output). It needs no JavaScript and nothing from
    the network, so it plays offline, in an untrusted notebook and on a web viewer of the repository alike."""

    def __init__(self, gif: bytes, n_videos: int, n_frames: int, fps: int):
        self.gif, self.n_videos, self.n_frames, self.fps = gif, n_videos, n_frames, fps

    def __repr__(self) -> str:
        return f"<animation: {self.n_videos} video(s), {self.n_frames} frames at {self.fps} fps>"

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        import base64

        return {"image/gif": base64.b64encode(self.gif).decode("ascii"), "text/plain": repr(self)}


def animate_videos(videos: torch.Tensor, titles: Sequence[str] | None = None, fps: int = 4,
                   scale: float = 1.6) -> VideoAnimation:
    """Videos (B, C, T, H, W) in [-1, 1], side by side with optional titles, as a looping GIF for Jupyter
    (display it, or leave it last in a cell). Each frame is drawn with matplotlib, then the frames are joined."""
    from PIL import Image

    v = _check_videos(videos)
    b, c, t = v.shape[:3]
    if titles is not None and len(titles) != b:
        raise ValueError(f"got {len(titles)} titles for {b} videos: give one title per video, or none")
    fps = _check_fps(fps)
    fig, axes = plt.subplots(1, b, figsize=(scale * b, scale + (0.3 if titles else 0)), squeeze=False)
    ims = []
    for i, ax in enumerate(axes[0]):
        img = to_numpy_image(v[i, :, 0][None])
        ims.append(ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest"))
        ax.set_axis_off()
        if titles:
            ax.set_title(titles[i], fontsize=8)
    fig.tight_layout()
    frames = []
    for k in range(t):
        for i, im in enumerate(ims):
            im.set_data(to_numpy_image(v[i, :, k][None]))
        fig.canvas.draw()
        rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3]
        frames.append(Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=255))
    plt.close(fig)
    return VideoAnimation(_encode_gif(frames, fps), b, t, fps)


def _check_fps(fps: int) -> int:
    from .checks import check_int

    return check_int("fps (frames per second of the animation)", fps, low=1, high=50)


def _encode_gif(frames: list, fps: int) -> bytes:
    """PIL images -> the bytes of a GIF that loops forever at `fps` frames per second."""
    import io

    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=int(1000 / fps), loop=0,
                   optimize=False, disposal=1)
    return buf.getvalue()


def video_strip_frames(videos: torch.Tensor, scale: int = 4, gap: int = 2) -> np.ndarray:
    """Videos (B, C, T, H, W) in [-1, 1] side by side, each pixel a scale x scale block: uint8 frames
    (T, scale*H, B*scale*W + (B-1)*gap, 3) on a white background between videos."""
    v = _check_videos(videos)
    if v.shape[1] == 1:
        v = v.expand(-1, 3, -1, -1, -1)
    if isinstance(scale, bool) or not isinstance(scale, int) or not 1 <= scale <= 32:
        raise ValueError(f"scale must be an integer from 1 to 32, got {scale!r}")
    b, _, t, h, w = v.shape
    img = ((v + 1) / 2 * 255).round().to(torch.uint8)
    img = img.repeat_interleave(scale, dim=3).repeat_interleave(scale, dim=4)  # (B, 3, T, sH, sW)
    out = torch.full((t, 3, scale * h, b * scale * w + (b - 1) * gap), 255, dtype=torch.uint8)
    for i in range(b):
        left = i * (scale * w + gap)
        out[:, :, :, left:left + scale * w] = img[i].permute(1, 0, 2, 3)
    return out.permute(0, 2, 3, 1).numpy()


def save_gif(videos: torch.Tensor, path: str, fps: int = 4, scale: int = 4) -> str:
    """Write videos (B, C, T, H, W) in [-1, 1], side by side, as a looping GIF at `path`, atomically (a temporary
    file in the same folder, then a rename: an interrupted write never leaves half a GIF). Returns the path."""

    from PIL import Image

    if not str(path).lower().endswith(".gif"):
        raise ValueError(f"the output file must end in .gif, got {path!r}")
    data = _encode_gif([Image.fromarray(f) for f in video_strip_frames(videos, scale)], _check_fps(fps))
    from .checkpoint import write_atomic

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    write_atomic(path, write, ".gif", make_folder=False)
    return str(path)


class LivePlot:
    """A loss curve redrawn in place in a notebook (a display handle, so the progress bar above it stays); `train`
    calls it every `TrainConfig.plot_every` steps when `TrainConfig.live_plot` is set."""

    def __init__(self) -> None:
        self.handle = None

    def __call__(self, losses: list[float], step: int) -> None:
        from IPython.display import display

        fig, ax = plt.subplots(figsize=(6, 2.8))
        ax.plot(losses, alpha=0.3, label="loss")
        k = max(1, len(losses) // 50)
        smooth = [sum(losses[max(0, i - k):i + 1]) / len(losses[max(0, i - k):i + 1]) for i in range(len(losses))]
        ax.plot(smooth, label="running mean")
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(f"training loss (step {step})")
        ax.legend()
        if self.handle is None:
            self.handle = display(fig, display_id=True)
        else:
            self.handle.update(fig)
        plt.close(fig)
