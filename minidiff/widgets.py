"""Interactive widgets, one builder per widget.

Each callback body is a pure function (`*_frame`) that tests call directly; the builder only wires ipywidgets
controls to it (with `_interactive`, the one piece of Output/observe/redraw scaffolding they share) and draws what
it returns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache

import matplotlib.pyplot as plt
import numpy as np
import torch

from .checks import check_image_batch
from .ddpm import q_sample
from .schedules import SCHEDULES, NoiseSchedule, make_schedule
from .viz import to_numpy_image


def new_figure(figsize: tuple[float, float], nrows: int = 0, ncols: int = 1, **subplots_kw):
    """A figure of its own, outside pyplot's list of open figures: `Figure` if nrows is 0, else (Figure, axes).

    Widgets draw into these. Pyplot's list is shared by every thread of the kernel, and ipykernel 7 runs some
    requests in threads of their own (subshells: JupyterLab 4.6 sends widget messages over one); the inline
    backend's `flush_figures` closes *every* pyplot figure after each execution, so a widget drawing with pyplot
    could lose its figure halfway through. Matplotlib's advice for figures drawn in a server is the same:
    create `matplotlib.figure.Figure` directly."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig if nrows == 0 else (fig, fig.subplots(nrows, ncols, **subplots_kw))


def _figure_output(fig: plt.Figure) -> dict:
    """A matplotlib figure as one Output-widget output (a PNG display_data, as the inline backend draws it)."""
    import base64
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return {"output_type": "display_data", "metadata": {},
            "data": {"image/png": base64.b64encode(buf.getvalue()).decode("ascii"), "text/plain": repr(fig)}}


IDLE_NOTE = ("<small>Moving a control redraws the picture while this notebook's kernel runs; in a saved copy "
             "the controls do nothing (a still of this widget follows it).</small>")


@cache
def _explorer_box_class():
    import ipywidgets as W

    class ExplorerBox(W.VBox):
        """A VBox whose plain-text form reads "[name: an interactive widget ...]" instead of "VBox(children=(HBox(...":
        Jupyter shows that text wherever the widget itself cannot be drawn (an untrusted notebook, a web viewer of
        the repository, a plain-text export)."""

        explorer_name = "explorer"

        def __repr__(self) -> str:
            return f"[{self.explorer_name}: an interactive widget; run the notebook to use it, a still follows]"

    return ExplorerBox


def _explorer_box(children: Sequence, name: str, frames: dict | None = None):
    """The widget's box; `frames` (what a widget precomputed, by setting) stays on it as `.frames`, so that a still
    of the widget can be drawn from the very pictures it shows."""
    box = _explorer_box_class()(list(children))
    box.explorer_name, box.frames = name, frames
    return box


def _interactive(controls: Sequence, draw: Callable[[], plt.Figure], rows: Sequence | None = None,
                 name: str = "explorer", busy: str = "drawing", frames: dict | None = None,
                 preview: Callable[[], plt.Figure | None] | None = None):
    """Show the figure `draw()` returns (made with `new_figure`, in one Output) now and whenever a control's value
    changes; return a box of [*rows, status line, output] (rows default to the controls, one per row).

    The figure is rendered to PNG and set as the Output's `outputs` directly, rather than captured with `with out:`
    (which routes the kernel's display messages through the Output widget's capture protocol, a path standard
    notebook executors handle less robustly, and which a headless test cannot see). The status line says "busy..."
    while `draw()` runs, and otherwise that the controls need a running kernel. A ValueError in `draw()` (an unknown
    word typed in a prompt box, say) replaces the figure by its message, as text, in the same output area; raised in
    a widget callback it would otherwise reach only the kernel's log.

    `preview()`, if given, runs first and returns a quick, coarse figure (or None when it has none to offer): it is
    shown at once, labelled as a preview by its own title, and `draw()`'s figure then replaces it."""
    import ipywidgets as W

    out = W.Output()
    status = W.HTML(value=IDLE_NOTE)

    def redraw(_change=None) -> None:
        status.value = f"<b>⏳ {busy}…</b>"
        try:
            quick = preview() if preview is not None else None
            if quick is not None:
                out.outputs = (_figure_output(quick),)
                status.value = f"<b>⏳ a coarse preview: {busy}…</b>"
            out.outputs = (_figure_output(draw()),)
        except Exception as e:  # show it where the learner is looking, in place of the stale figure
            what = str(e) if isinstance(e, ValueError) else f"{type(e).__name__}: {e}"
            out.outputs = ({"output_type": "stream", "name": "stdout",
                            "text": f"⚠ {what}\n(change the controls above and it redraws)\n"},)
        finally:
            status.value = IDLE_NOTE

    for c in controls:
        c.observe(redraw, names="value")
    redraw()
    return _explorer_box([*(rows if rows is not None else controls), status, out], name, frames)


def _precompute(keys: Sequence, compute: Callable, what: str) -> dict:
    """{key: compute(key)} for every key, with a progress bar. A widget that samples on every move answers in
    seconds; one that looks its pictures up answers in the time it takes to draw them.

    In Jupyter the bar is shown through a display handle and emptied when done, so the saved notebook keeps no
    stale "0%" bar (a closed progress widget, which a reader of the saved copy would see as text or as an error)."""
    from tqdm.auto import tqdm
    from tqdm.notebook import tqdm_notebook

    keys = list(keys)
    if issubclass(tqdm, tqdm_notebook):
        from IPython.display import display

        bar = tqdm(keys, desc=what, display=False)
        handle = display(bar.container, display_id=True)
    else:
        bar, handle = tqdm(keys, desc=what, leave=False), None
    try:
        return {k: compute(k) for k in bar}
    finally:
        bar.close()
        if handle is not None:
            handle.update({"text/plain": ""}, raw=True)


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
    xt = q_sample(schedule, x0, noise.reshape(x0.shape), t)
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
    a1.stairs(frame.hist_density, frame.hist_edges, fill=True, color="tab:blue", alpha=0.6, label="pixels")
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

    def draw() -> plt.Figure:
        frame = noising_explorer_frame(x0, schedules[dropdown.value], t_slider.value, noise)
        fig, axes = new_figure((12, 3.2), 1, 3)
        draw_noising_frame(frame, axes)
        fig.suptitle(frame.title, fontsize=10)
        fig.tight_layout()
        return fig

    return _interactive([t_slider, dropdown], draw, [W.HBox([t_slider, dropdown])], name="noising explorer")


# ---------------------------------------------------------------------------------------- reverse-chain explorer


@dataclass
class ReverseChainFrame:
    """One stop on the reverse chain: the current x_t and the network's guess of x_0 from it."""

    t: int  # -1 = after the last step
    step: int  # how many denoising steps have been taken
    xt: np.ndarray  # image grid of x_t, in [0, 1]
    x0_hat: np.ndarray  # image grid of the predicted x_0, in [0, 1]

    @property
    def title(self) -> str:
        where = "the final sample" if self.t < 0 else f"t = {self.t}"
        return f"{where} (after {self.step} denoising steps)"


def reverse_chain_frame(trajectory: list[tuple[int, torch.Tensor, torch.Tensor]], index: int,
                        nrow: int = 8) -> ReverseChainFrame:
    """Frame `index` of a trajectory returned by `p_sample_loop(..., trajectory=k)` (TrajectoryStep's)."""
    from .viz import image_grid

    if not trajectory:
        raise ValueError("empty trajectory: sample with trajectory=True (or every k-th step, trajectory=k)")
    if not 0 <= index < len(trajectory):
        raise ValueError(f"index {index} out of range: the trajectory has {len(trajectory)} frames")
    t, xt, x0 = trajectory[index]
    first_t = trajectory[0][0]
    return ReverseChainFrame(t=int(t), step=int(first_t - t), xt=image_grid(xt, nrow), x0_hat=image_grid(x0, nrow))


def draw_reverse_chain_frame(frame: ReverseChainFrame, axes: tuple[plt.Axes, plt.Axes]) -> None:
    where = "the end" if frame.t < 0 else f"t = {frame.t}"
    for ax, img, name in zip(axes, (frame.xt, frame.x0_hat), ("x_t", "predicted x_0"), strict=True):
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
        ax.set_axis_off()
        ax.set_title(f"{name} at {where}")


def reverse_chain_explorer(trajectory: list[tuple[int, torch.Tensor, torch.Tensor]], nrow: int = 8):
    """A slider over the sampling steps: x_t beside the predicted x_0."""
    import ipywidgets as W

    slider = W.IntSlider(value=0, min=0, max=len(trajectory) - 1, description="frame", continuous_update=False,
                         layout=W.Layout(width="60%"))

    def draw() -> plt.Figure:
        frame = reverse_chain_frame(trajectory, slider.value, nrow)
        fig, axes = new_figure((9, 4.6), 1, 2)
        draw_reverse_chain_frame(frame, axes)
        fig.suptitle(frame.title)
        return fig

    return _interactive([slider], draw, name="reverse-chain explorer")


# -------------------------------------------------------------------------------------------------- DDIM explorer


def _draw_grid(grid: np.ndarray, title: str) -> plt.Figure:
    """One image grid with a title, as a new figure."""
    fig, ax = new_figure((6, 6 * grid.shape[0] / grid.shape[1]), 1, 1)
    ax.imshow(grid, cmap="gray" if grid.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title)
    return fig


def ddim_explorer_frame(model, schedule: NoiseSchedule, x_T: torch.Tensor, labels: torch.Tensor | None,
                        steps: int, eta: float, seed: int = 0, nrow: int = 8) -> np.ndarray:
    """Samples from the fixed starting noise x_T with `steps` DDIM steps and the given eta, as one image grid.
    (eta > 0 draws its extra noise from `seed`, so the frame is a deterministic function of its arguments.)"""
    from .ddim import ddim_sample
    from .viz import image_grid

    x = ddim_sample(model, schedule, tuple(x_T.shape), steps=steps, eta=eta,
                    cond={"y": labels} if labels is not None else None, noise=x_T,
                    generator=torch.Generator().manual_seed(seed), progress=False)
    return image_grid(x.cpu(), nrow)


def ddim_explorer(model, schedule: NoiseSchedule, x_T: torch.Tensor, labels: torch.Tensor | None = None,
                  nrow: int = 8, steps: Sequence[int] = (1, 2, 5, 10, 20, 50, 100),
                  etas: Sequence[float] = (0.0, 0.5, 1.0)):
    """Sliders for the number of DDIM steps and eta, over one fixed batch of starting noise.

    Every (steps, eta) grid is sampled once, when the widget is built (a progress bar shows it: 188 x 3 network
    calls for the defaults), so that moving a slider only looks its grid up and draws it; the grids stay on the
    widget as `.frames[steps, eta]`."""
    import ipywidgets as W

    steps, etas = [int(n) for n in steps], [float(e) for e in etas]
    if not steps or not etas:
        raise ValueError("ddim_explorer needs at least one step count and one eta")
    grids = _precompute([(n, e) for n in steps for e in etas],
                        lambda k: ddim_explorer_frame(model, schedule, x_T, labels, k[0], k[1], nrow=nrow),
                        "sampling every (steps, eta)")
    steps_slider = W.SelectionSlider(options=steps, value=20 if 20 in steps else steps[0], description="steps",
                                     continuous_update=False)
    eta = W.SelectionSlider(options=etas, value=etas[0], description="eta", continuous_update=False)

    def draw() -> plt.Figure:
        n, e = steps_slider.value, eta.value
        return _draw_grid(grids[n, e], f"DDIM, {n} steps, eta = {e:g}")

    return _interactive([steps_slider, eta], draw, [W.HBox([steps_slider, eta])], name="DDIM explorer",
                        frames=grids)


# ------------------------------------------------------------------------------------------ flow particles (2-D)


@dataclass
class FlowFrame:
    """What the flow-particles widget shows at one point of an Euler trajectory."""

    t: float
    points: np.ndarray  # (N, 2) particle positions at time t
    grid_xy: np.ndarray  # (G*G, 2) where the velocity field is drawn
    velocity: np.ndarray  # (G*G, 2) v_theta at those points and time t


def flow_particles_frame(trajectory: list, index: int, model, extent: float = 3.0, grid: int = 15) -> FlowFrame:
    """Particles of an Euler trajectory (`euler_sample(..., trajectory=True)`) at its point `index`, and the learned
    velocity field at that time."""
    if not 0 <= index < len(trajectory):
        raise ValueError(f"index {index} out of range: the trajectory has {len(trajectory)} frames")
    t, points, _ = trajectory[index]
    t = float(t)
    lin = torch.linspace(-extent, extent, grid)
    gx, gy = torch.meshgrid(lin, lin, indexing="xy")
    xy = torch.stack([gx.flatten(), gy.flatten()], 1)
    with torch.no_grad():
        v = model(xy, torch.full((xy.shape[0],), t))
    return FlowFrame(t=t, points=points.numpy(), grid_xy=xy.numpy(), velocity=v.numpy())


def draw_flow_frame(frame: FlowFrame, ax: plt.Axes, target: np.ndarray | None = None, extent: float = 3.0) -> None:
    if target is not None:
        ax.scatter(target[:, 0], target[:, 1], s=2, c="lightgray", label="data")
    # draw -v: sampling moves particles along dx = (t_next - t) v with t decreasing
    ax.quiver(frame.grid_xy[:, 0], frame.grid_xy[:, 1], -frame.velocity[:, 0], -frame.velocity[:, 1],
              color="tab:orange", alpha=0.6, angles="xy")
    ax.scatter(frame.points[:, 0], frame.points[:, 1], s=3, c="tab:blue", label="particles")
    ax.set_xlim(-extent, extent)
    ax.set_ylim(-extent, extent)
    ax.set_aspect("equal")
    ax.set_title(f"t = {frame.t:.2f}")


def flow_particles_explorer(trajectory: list, model, target: np.ndarray | None = None):
    """A time slider moving particles along their learned trajectories, over the velocity field at that time."""
    import ipywidgets as W

    slider = W.IntSlider(value=0, min=0, max=len(trajectory) - 1, description="step", continuous_update=False)

    def draw() -> plt.Figure:
        fig, ax = new_figure((5, 5), 1, 1)
        draw_flow_frame(flow_particles_frame(trajectory, slider.value, model), ax, target)
        return fig

    return _interactive([slider], draw, name="flow-particles explorer")


# ------------------------------------------------------------------------------------------------ patch explorer


@dataclass
class PatchFrame:
    """What the patch explorer shows for one patch size."""

    patch_size: int
    image: np.ndarray  # (H, W) or (H, W, 3) in [0, 1]
    grid_h: int  # patches per column
    grid_w: int  # patches per row
    tokens: np.ndarray  # (N, p*p*C): the token sequence, one row per token, values in [0, 1]
    attention_pairs: int  # N^2: how many query-key pairs self-attention compares


def patch_explorer_frame(image: torch.Tensor, patch_size: int) -> PatchFrame:
    """Cut one image (C, H, W) in [-1, 1] into patch_size x patch_size tokens with `models.dit.patchify`."""
    from .models.layers import patchify

    if image.ndim != 3:
        raise ValueError(f"patch explorer expects one image (C, H, W), got shape {tuple(image.shape)}")
    tokens = patchify(image[None].float(), patch_size)[0]
    c, h, w = image.shape
    return PatchFrame(patch_size, to_numpy_image(image), h // patch_size, w // patch_size,
                      ((tokens.numpy() + 1) / 2).clip(0, 1), tokens.shape[0] ** 2)


def draw_patch_frame(frame: PatchFrame, axes: tuple[plt.Axes, plt.Axes]) -> None:
    ax_img, ax_tok = axes
    p = frame.patch_size
    ax_img.imshow(frame.image, cmap="gray" if frame.image.ndim == 2 else None, vmin=0, vmax=1,
                  interpolation="nearest")
    h, w = frame.grid_h * p, frame.grid_w * p  # the patch borders, as one collection of lines each way
    ax_img.vlines(np.arange(1, frame.grid_w) * p - 0.5, -0.5, h - 0.5, color="tab:orange", lw=1)
    ax_img.hlines(np.arange(1, frame.grid_h) * p - 0.5, -0.5, w - 0.5, color="tab:orange", lw=1)
    if frame.grid_h * frame.grid_w <= 64:
        for r in range(frame.grid_h):
            for col in range(frame.grid_w):
                ax_img.text(col * p + p / 2 - 0.5, r * p + p / 2 - 0.5, str(r * frame.grid_w + col), ha="center",
                            va="center", color="tab:orange", fontsize=7 if p < 4 else 9)
    ax_img.set_title(f"patch size {p}: a {frame.grid_h}x{frame.grid_w} grid of tokens")
    ax_img.set_axis_off()
    n, d = frame.tokens.shape
    ax_tok.imshow(frame.tokens, cmap="gray", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    ax_tok.set_xlabel(f"token features (p*p*C = {d})")
    ax_tok.set_ylabel(f"token index (N = {n})")
    ax_tok.set_title(f"the sequence the Transformer sees: {n} tokens, {frame.attention_pairs:,} attention pairs")


def patch_explorer(image: torch.Tensor, sizes: tuple[int, ...] | None = None):
    """A patch-size picker: the image cut into tokens (left) and the resulting token sequence (right)."""
    import ipywidgets as W

    h, w = image.shape[-2:]
    sizes = sizes or tuple(d for d in range(1, min(h, w) + 1) if h % d == 0 and w % d == 0)
    pick = W.ToggleButtons(options=list(sizes), value=2 if 2 in sizes else sizes[0], description="patch size")

    def draw() -> plt.Figure:
        fig, axes = new_figure((11, 4.2), 1, 2, gridspec_kw={"width_ratios": [1, 1.3]})
        draw_patch_frame(patch_explorer_frame(image, pick.value), axes)
        return fig

    return _interactive([pick], draw, name="patch explorer")


# ---------------------------------------------------------------------------------------- guidance scale explorer


def cfg_explorer_frame(model, x_1: torch.Tensor, labels: torch.Tensor, scale: float, null: int, steps: int = 20,
                       nrow: int = 10) -> np.ndarray:
    """Euler samples of a flow model from the fixed noise x_1 with classifier-free guidance `scale`, as a grid."""
    from .flow import euler_sample
    from .guidance import ClassifierFreeGuidance
    from .viz import image_grid

    with torch.no_grad():
        x = euler_sample(ClassifierFreeGuidance(model, scale, {"y": null}), tuple(x_1.shape), steps=steps,
                         cond={"y": labels}, noise=x_1, device=x_1.device, progress=False)
    return image_grid(x.clamp(-1, 1).cpu(), nrow)


def cfg_explorer(model, x_1: torch.Tensor, labels: torch.Tensor, null: int, steps: int = 20, nrow: int = 10,
                 scales: tuple[float, ...] = (0.0, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0)):
    """A guidance-scale slider over one fixed batch of noise. Every scale's grid is sampled once, when the widget
    is built (with a progress bar), so that moving the slider only looks its grid up and draws it; the grids stay
    on the widget as `.frames[scale]`."""
    import ipywidgets as W

    from .checks import check_number

    scales = tuple(check_number(f"scales[{i}] (a guidance scale)", v, low=0.0) for i, v in enumerate(scales))
    if not scales:
        raise ValueError("scales must hold at least one guidance scale")
    grids = _precompute(scales, lambda w: cfg_explorer_frame(model, x_1, labels, w, null, steps, nrow),
                        "sampling every guidance scale")
    scale = W.SelectionSlider(options=list(scales), value=1.0 if 1.0 in scales else scales[0],
                              description="CFG scale", continuous_update=False)

    def draw() -> plt.Figure:
        return _draw_grid(grids[scale.value], f"guidance scale {scale.value:g} ({steps} Euler steps, same noise)")

    return _interactive([scale], draw, name="guidance-scale explorer", frames=grids)


# ------------------------------------------------------------------------------------------ latent explorer (VAE)


def latent_walk_frame(vae, z_a: torch.Tensor, z_b: torch.Tensor, lam: float) -> torch.Tensor:
    """Decode the straight line between two latents (unscaled, (C, T_lat, h, w) each) at the weight `lam` in [0, 1]:
    x = decode((1 - lam) z_a + lam z_b), one video (1, C, T, H, W)."""
    if z_a.shape != z_b.shape:
        raise ValueError(f"the two latents must have the same shape, got {tuple(z_a.shape)} and {tuple(z_b.shape)}")
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"the weight lam must be in [0, 1], got {lam}")
    with torch.no_grad():
        return vae.decode(((1 - lam) * z_a + lam * z_b)[None]).clamp(-1, 1).cpu()


def latent_explorer(vae, videos: torch.Tensor, captions: list[str] | None = None):
    """Pick two videos and walk between their latents: the rows show video A itself, the decoded mix and video B
    itself, frame by frame. The mix at lam = 0 is decode(z_A), A's reconstruction (not A), at lam = 1 B's."""
    import ipywidgets as W

    from .viz import show_video_frames, video_frames_figsize

    with torch.no_grad():
        latents = torch.cat([vae.encode(v)[0] for v in videos.split(64)])
    n = len(videos)
    a = W.IntSlider(value=0, min=0, max=n - 1, description="video A", continuous_update=False)
    b = W.IntSlider(value=min(1, n - 1), min=0, max=n - 1, description="video B", continuous_update=False)
    lam = W.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.1, description="weight λ", continuous_update=False)

    def draw() -> plt.Figure:
        mix = latent_walk_frame(vae, latents[a.value], latents[b.value], lam.value)
        rows = torch.cat([videos[a.value][None].cpu(), mix, videos[b.value][None].cpu()])
        names = [captions[a.value] if captions else f"video {a.value}", f"decode(mix), λ={lam.value:.1f}",
                 captions[b.value] if captions else f"video {b.value}"]
        fig, ax = new_figure(video_frames_figsize(rows), 1, 1)
        show_video_frames(rows, title="latent walk: A (top), decoded mix (middle), B (bottom)", row_labels=names,
                          ax=ax)
        return fig

    return _interactive([a, b, lam], draw, [W.HBox([a, b]), lam], name="latent-walk explorer", busy="decoding")


# ------------------------------------------------------------------------------------------------- prompt search


@dataclass
class PromptSearchFrame:
    """What the prompt-search widget shows for one prompt."""

    prompt: str
    error: str | None  # a message instead of results when the prompt cannot be encoded
    captions: list[tuple[str, float]]  # the k most similar captions and their cosine similarities
    videos: list[tuple[int, float]]  # the k most similar videos (index into the pool) and their similarities


def prompt_search_frame(clip, prompt: str, captions: list[str], caption_emb: torch.Tensor,
                        video_emb: torch.Tensor, k: int = 5) -> PromptSearchFrame:
    """Embed `prompt` with the tiny CLIP's text tower and rank captions (their embeddings `caption_emb`, (N, D))
    and videos (`video_emb`, (M, D)) by cosine similarity. An unknown word gives `error`, not an exception."""
    try:
        with torch.no_grad():
            e = clip.embed_text([prompt])[0]
    except ValueError as err:
        return PromptSearchFrame(prompt, str(err), [], [])
    cs, vs = caption_emb @ e, video_emb @ e
    top_c, top_v = cs.topk(min(k, len(cs))), vs.topk(min(k, len(vs)))
    return PromptSearchFrame(prompt, None, [(captions[i], float(s)) for s, i in zip(*top_c, strict=True)],
                             [(int(i), float(s)) for s, i in zip(*top_v, strict=True)])


def draw_prompt_search_frame(frame: PromptSearchFrame, videos: torch.Tensor, fig: plt.Figure) -> None:
    """Bars of the top captions' similarities (top) and the top videos' middle frames (below). A frame with an
    error draws its message in red (the widget shows it as plain text instead: `prompt_search`)."""
    if frame.error:
        ax = fig.add_subplot(1, 1, 1)
        ax.axis("off")
        ax.text(0.0, 0.5, frame.error, wrap=True, fontsize=9, color="tab:red", va="center", transform=ax.transAxes)
        return
    k = len(frame.videos)
    gs = fig.add_gridspec(2, k)
    ax = fig.add_subplot(gs[0, :])
    names, sims = zip(*frame.captions, strict=True)
    ax.barh(range(len(sims))[::-1], sims, color="tab:blue")
    ax.set_yticks(range(len(sims))[::-1], names, fontsize=9)
    ax.set_xlim(-1, 1)
    ax.axvline(0, color="gray", lw=0.8)
    ax.set_title(f"prompt {frame.prompt!r}: most similar captions (cosine similarity)")
    from .viz import image_grid

    axv = fig.add_subplot(gs[1, :])  # the k middle frames side by side, one image (quicker to draw than k axes)
    middle = torch.stack([videos[i, :, videos.shape[2] // 2] for i, _ in frame.videos])
    axv.imshow(image_grid(middle, nrow=k, padding=2), interpolation="nearest")
    size = videos.shape[-1] + 2
    axv.set_xticks([2 + size * j + videos.shape[-1] / 2 for j in range(k)],
                   [f"video {i}: {s:.2f}" for i, s in frame.videos], fontsize=8)
    axv.set_yticks([])
    for side in axv.spines.values():
        side.set_visible(False)


def prompt_search(clip, captions: list[str], videos: torch.Tensor, video_latents: torch.Tensor, k: int = 5):
    """A text box: type any prompt made of known words ("red", "a 3 moving up", ""), see the most similar captions
    and videos of the pool according to the tiny CLIP."""
    import ipywidgets as W

    with torch.no_grad():
        caption_emb, video_emb = clip.embed_text(captions), clip.embed_video(video_latents)
    box = W.Text(value="a red 3 moving left", description="prompt", continuous_update=False,
                 layout=W.Layout(width="420px"))

    def draw() -> plt.Figure:
        frame = prompt_search_frame(clip, box.value, captions, caption_emb, video_emb, k)
        if frame.error:  # as text in the output area, not a figure with nothing in it
            raise ValueError(frame.error)
        fig = new_figure((9, 4.6))
        draw_prompt_search_frame(frame, videos, fig)
        return fig

    return _interactive([box], draw, name="prompt search", busy="searching")


# --------------------------------------------------------------------------------------- prompt playground (t2v)


@dataclass
class PlaygroundFrame:
    """What the prompt playground shows: one video (or an error) and what the judge reads off it."""

    prompt: str
    steps: int
    cfg_scale: float
    seed: int
    error: str | None  # a message instead of a video when the prompt cannot be used
    video: torch.Tensor | None  # (1, 3, T, H, W) in [-1, 1]
    judged: dict[str, str] | None  # what the video judge reads off the video: digit, colour, direction
    asked: dict[str, str] | None = None  # what the prompt asks for, of the same three (the words it names)
    heldout: bool | None = None  # a held-out combination (never in training)? None unless all three are asked

    @property
    def title(self) -> str:
        return f"{self.prompt!r}: {self.steps} Euler steps, guidance {self.cfg_scale:g}, seed {self.seed}"

    @property
    def verdict(self) -> str:
        """What the judge read, each attribute the prompt names marked ✓ (as asked) or ✗, and whether the
        combination was seen in training."""
        if not self.judged:
            return ""
        parts = [f"{k} {v}" + ("" if k not in (self.asked or {}) else " ✓" if v == self.asked[k] else " ✗")
                 for k, v in self.judged.items()]
        combo = {None: "", True: " (a combination held out of training)", False: " (a training combination)"}
        return "judge reads: " + ", ".join(parts) + combo[self.heldout]


def asked_attributes(prompt: str) -> tuple[dict[str, str], bool | None]:
    """The digit, colour and direction a prompt names (those it names) and, if it names all three, whether that
    combination is held out of training (data.HELDOUT_COMBOS)."""
    from .data import COLOUR_NAMES, DIRECTION_NAMES, HELDOUT_COMBOS

    words = prompt.split()
    asked = {}
    for key, names in (("digit", [str(d) for d in range(10)]), ("colour", COLOUR_NAMES),
                       ("direction", DIRECTION_NAMES)):
        hit = [w for w in words if w in names]
        if len(hit) == 1:
            asked[key] = hit[0]
    if len(asked) < 3:
        return asked, None
    combo = (int(asked["digit"]), COLOUR_NAMES.index(asked["colour"]), DIRECTION_NAMES.index(asked["direction"]))
    return asked, combo in HELDOUT_COMBOS


def prompt_playground_frame(pipe, prompt: str, steps: int, cfg_scale: float, seed: int = 0,
                            judge=None) -> PlaygroundFrame:
    """One video for `prompt` from a text-to-video pipeline (`minidiff.pipeline.TextToVideo`); an unknown word or an
    empty prompt gives `error` (the pipeline's message), not an exception. With a digit classifier as `judge`,
    also what the video judge reads off the result."""
    from .data import COLOUR_NAMES, DIRECTION_NAMES
    from .eval import judge_videos

    try:
        video = pipe([prompt], steps=steps, cfg_scale=cfg_scale, seed=seed)
    except ValueError as err:
        return PlaygroundFrame(prompt, steps, cfg_scale, seed, str(err), None, None)
    judged = None
    if judge is not None:
        j = judge_videos(video, judge)
        d, c, m = int(j.digits[0]), int(j.colours[0]), int(j.directions[0])
        judged = {"digit": str(d) if d >= 0 else "none", "colour": COLOUR_NAMES[c] if c >= 0 else "none",
                  "direction": DIRECTION_NAMES[m] if m >= 0 else "none"}
    return PlaygroundFrame(prompt, steps, cfg_scale, seed, None, video, judged, *asked_attributes(prompt))


def draw_playground_frame(frame: PlaygroundFrame, fig: plt.Figure) -> None:
    """Every frame of the video in a row (time left to right), with what the judge saw. A frame with an error draws
    its message in red (the widget shows it as plain text instead: `prompt_playground`)."""
    if frame.error:
        ax = fig.add_subplot(1, 1, 1)
        ax.axis("off")
        ax.text(0.0, 0.5, frame.error, wrap=True, fontsize=9, color="tab:red", va="center", transform=ax.transAxes)
        return
    from .viz import show_video_frames

    ax = fig.add_subplot(1, 1, 1)
    title = frame.title
    if frame.judged:
        title += "\n" + frame.verdict
    show_video_frames(frame.video, title=title, ax=ax)


PREVIEW_STEPS = 2


def prompt_playground(pipe, judge=None, prompt: str = "a red 3 moving left"):
    """Type a caption, choose the number of Euler steps, the guidance scale and the seed: see the video (every frame,
    time left to right) and what the video judge reads off it.

    Sampling a video takes seconds on a CPU, so each change first shows a labelled 2-step preview of the same
    prompt, guidance and seed, then the video with the chosen steps; a setting seen before is shown at once."""
    import ipywidgets as W

    box = W.Text(value=prompt, description="prompt", continuous_update=False, layout=W.Layout(width="420px"))
    steps = W.SelectionSlider(options=[1, 2, 5, 10, 20, 50], value=20, description="steps", continuous_update=False)
    scales = sorted({0.0, 1.0, 2.0, 4.0, 7.0, 10.0, float(pipe.cfg_scale)})
    cfg = W.SelectionSlider(options=scales, value=float(pipe.cfg_scale), description="guidance",
                            continuous_update=False)
    seed = W.IntSlider(value=0, min=0, max=20, description="seed", continuous_update=False)
    done: dict[tuple, PlaygroundFrame] = {}  # every video sampled so far, by setting: going back is instant

    def frame_for(n_steps: int) -> PlaygroundFrame:
        key = (box.value, n_steps, cfg.value, seed.value)
        if key not in done:
            if len(done) >= 64:
                done.pop(next(iter(done)))
            done[key] = prompt_playground_frame(pipe, *key, judge=judge)
        frame = done[key]
        if frame.error:  # as text in the output area, not a figure with nothing in it
            raise ValueError(frame.error)
        return frame

    def preview() -> plt.Figure | None:  # the same prompt, guidance and seed with 2 Euler steps, while the real
        if steps.value <= PREVIEW_STEPS or (box.value, steps.value, cfg.value, seed.value) in done:  # one samples
            return None
        frame = frame_for(PREVIEW_STEPS)
        fig = new_figure((10, 2.2))
        draw_playground_frame(frame, fig)
        fig.axes[0].set_title(f"preview, {PREVIEW_STEPS} Euler steps (sampling {steps.value} steps…)\n"
                              f"{frame.prompt!r}, guidance {frame.cfg_scale:g}, seed {frame.seed}")
        return fig

    def draw() -> plt.Figure:
        fig = new_figure((10, 2.2))
        draw_playground_frame(frame_for(steps.value), fig)
        return fig

    return _interactive([box, steps, cfg, seed], draw, [box, W.HBox([steps, cfg, seed])], name="prompt playground",
                        busy="sampling a video", preview=preview)


# ------------------------------------------------------------------------------------------------ SDEdit explorer


@dataclass
class SDEditFrame:
    """One strength of the SDEdit explorer: the images, their edits, and what the judge reads off the edits."""

    strength: float
    images: torch.Tensor
    edits: torch.Tensor
    target: torch.Tensor
    read: torch.Tensor

    @property
    def title(self) -> str:
        hits = int((self.read == self.target).sum())
        moved = float((self.edits - self.images).pow(2).mean().sqrt())
        return (f"strength {self.strength:.2f}: the judge reads the new label in {hits}/{len(self.read)}; "
                f"RMS change {moved:.2f}")


def sdedit_explorer_frame(model, images: torch.Tensor, target: torch.Tensor, strength: float, judge,
                          steps: int = 20, seed: int = 0) -> SDEditFrame:
    """SDEdit of `images` towards the labels `target` at one strength (the same noise at every strength)."""
    from .editing import sdedit
    from .eval import predict

    edits = sdedit(model, images, strength, steps=steps, cond={"y": target},
                   generator=torch.Generator().manual_seed(seed)).clamp(-1, 1).cpu()
    return SDEditFrame(strength, images.cpu(), edits, target.cpu(), predict(judge, edits))


def draw_sdedit_frame(frame: SDEditFrame, fig: plt.Figure) -> None:
    """Top row the images, bottom row their edits, the judge's reading under each edit."""
    from .viz import image_grid

    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(image_grid(torch.cat([frame.images, frame.edits]), len(frame.images)), cmap="gray")
    ax.set_title(frame.title, fontsize=9)
    ax.set_yticks([])
    ax.set_xticks([])
    ax.set_ylabel("image / edit", fontsize=8)
    ax.set_xlabel("judge reads: " + " ".join(str(int(r)) for r in frame.read) + "   (asked for: "
                  + " ".join(str(int(t)) for t in frame.target) + ")", fontsize=8)


def sdedit_explorer(model, images: torch.Tensor, target: torch.Tensor, judge, steps: int = 20,
                    strengths: tuple[float, ...] = (0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0)):
    """A strength slider for SDEdit: each strength's edits are computed once, when the widget is built, and stay on
    it as `.frames[strength]` (SDEditFrame)."""
    import ipywidgets as W

    from .checks import check_number

    strengths = tuple(check_number(f"strengths[{i}]", v, 0.0, 1.0) for i, v in enumerate(strengths))
    if not strengths:
        raise ValueError("strengths must hold at least one strength in [0, 1]")
    frames = _precompute(strengths, lambda s: sdedit_explorer_frame(model, images, target, s, judge, steps),
                         "editing at every strength")
    slider = W.SelectionSlider(options=list(strengths), value=strengths[len(strengths) // 2],
                               description="strength", continuous_update=False)

    def draw() -> plt.Figure:
        fig = new_figure((min(12, 1.1 * len(images) + 1), 2.9))
        draw_sdedit_frame(frames[slider.value], fig)
        return fig

    return _interactive([slider], draw, name="SDEdit explorer", frames=frames)
