import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from minidiff.data import load_photo
from minidiff.schedules import make_schedule
from minidiff.widgets import noising_explorer, noising_explorer_frame


@pytest.fixture(scope="module")
def photo():
    return load_photo(32)


def test_frame_at_t0_is_the_photo_and_at_T_is_gaussian(photo):
    s = make_schedule("linear", 1000)
    noise = torch.randn(photo.shape, generator=torch.Generator().manual_seed(0))
    f0 = noising_explorer_frame(photo, s, 0, noise)
    clean = ((photo.permute(1, 2, 0) + 1) / 2).numpy()
    assert np.abs(f0.image - clean).max() < 0.05
    assert f0.signal_coef > 0.9999
    fT = noising_explorer_frame(photo, s, 999, noise)
    assert abs(fT.pixel_mean) < 0.1 and abs(fT.pixel_std - 1) < 0.1
    # the histogram is a density close to N(0, 1) at the end
    centres = (fT.hist_edges[:-1] + fT.hist_edges[1:]) / 2
    pdf = np.exp(-0.5 * centres**2) / np.sqrt(2 * np.pi)
    assert np.abs(fT.hist_density - pdf).max() < 0.12
    assert fT.log10_snr.shape == (1000,)
    assert fT.snr_t == pytest.approx(float(s.snr[999]))
    assert "t=999" in fT.title


def test_frame_differs_between_schedules_at_same_t(photo):
    noise = torch.randn(photo.shape, generator=torch.Generator().manual_seed(0))
    lin = noising_explorer_frame(photo, make_schedule("linear"), 300, noise)
    cos = noising_explorer_frame(photo, make_schedule("cosine"), 300, noise)
    assert cos.snr_t > lin.snr_t  # the cosine schedule destroys information more slowly in the middle


def test_frame_bad_t(photo):
    with pytest.raises(ValueError, match="out of range"):
        noising_explorer_frame(photo, make_schedule("linear", 10), 10, torch.zeros_like(photo))


def test_widget_builds_headless_and_reacts(photo):
    w = noising_explorer(photo, T=100)
    slider, dropdown = w.children[0].children
    assert slider.max == 99 and dropdown.options == ("linear", "cosine")
    slider.value = 99
    dropdown.value = "cosine"  # re-renders without raising


def test_reverse_chain_frame_is_pure_and_validates():
    from minidiff.widgets import reverse_chain_frame

    z, o = torch.zeros(4, 1, 8, 8), torch.ones(4, 1, 8, 8)
    traj = [(999, z, o), (0, o, -o)]
    f = reverse_chain_frame(traj, 1, nrow=2)
    assert f.t == 0 and f.step == 999 and "t = 0" in f.title
    assert f.xt.shape == f.x0_hat.shape == (19, 19)
    assert f.xt[1, 1] == 1.0 and f.x0_hat[1, 1] == 0.0
    with pytest.raises(ValueError, match="out of range"):
        reverse_chain_frame(traj, 2)
    with pytest.raises(ValueError, match="empty trajectory"):
        reverse_chain_frame([], 0)


def test_reverse_chain_widget_builds_headless():
    from minidiff.widgets import reverse_chain_explorer

    traj = [(t, torch.randn(2, 1, 8, 8), torch.randn(2, 1, 8, 8)) for t in (99, 50, 0)]
    w = reverse_chain_explorer(traj, nrow=2)
    slider = w.children[0]
    assert slider.max == 2
    slider.value = 2


def test_ddim_explorer_frame_is_deterministic_and_widget_builds():
    from minidiff.widgets import ddim_explorer, ddim_explorer_frame

    s = make_schedule("linear", 1000)

    def model(x, t, y=None):
        return 0.5 * x

    x_T = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    a = ddim_explorer_frame(model, s, x_T, None, steps=10, eta=0.5, seed=3, nrow=2)
    b = ddim_explorer_frame(model, s, x_T, None, steps=10, eta=0.5, seed=3, nrow=2)
    c = ddim_explorer_frame(model, s, x_T, None, steps=10, eta=0.0, nrow=2)
    assert a.shape == (19, 19) and np.array_equal(a, b) and not np.array_equal(a, c)
    w = ddim_explorer(model, s, x_T, nrow=2)
    steps, eta = w.children[0].children
    steps.value, eta.value = 5, 1.0  # re-renders without raising


def test_flow_particles_frame_and_widget():
    from minidiff.widgets import flow_particles_explorer, flow_particles_frame

    def model(x, t):
        return x * t.reshape(-1, 1)

    from minidiff.flow import euler_sample

    _, traj = euler_sample(model, (10, 2), steps=1, generator=torch.Generator().manual_seed(0), trajectory=True,
                           progress=False)
    assert [step.t for step in traj] == [1.0, 0.0]
    f = flow_particles_frame(traj, 0, model, grid=5)
    assert f.t == 1.0 and f.points.shape == (10, 2) and f.grid_xy.shape == (25, 2)
    np.testing.assert_allclose(f.velocity, f.grid_xy, atol=1e-6)  # v = x at t = 1
    with pytest.raises(ValueError, match="out of range"):
        flow_particles_frame(traj, 2, model)
    w = flow_particles_explorer(traj, model)
    w.children[0].value = 1


def test_patch_explorer_frame_and_widget():
    from minidiff.widgets import draw_patch_frame, patch_explorer, patch_explorer_frame

    img = torch.linspace(-1, 1, 3 * 8 * 8).reshape(3, 8, 8)
    f = patch_explorer_frame(img, 4)
    assert (f.grid_h, f.grid_w, f.attention_pairs) == (2, 2, 16)
    assert f.tokens.shape == (4, 4 * 4 * 3) and f.tokens.min() >= 0 and f.tokens.max() <= 1
    # token 1 is the top-right square of the image
    np.testing.assert_allclose(f.tokens[1], ((img[:, :4, 4:].permute(1, 2, 0).reshape(-1) + 1) / 2).numpy(),
                               atol=1e-6)
    assert patch_explorer_frame(img, 1).tokens.shape == (64, 3)
    with pytest.raises(ValueError, match="patch size 3 does not divide"):
        patch_explorer_frame(img, 3)
    with pytest.raises(ValueError, match="one image"):
        patch_explorer_frame(img[None], 2)
    fig, axes = plt.subplots(1, 2)
    draw_patch_frame(f, axes)
    plt.close(fig)
    w = patch_explorer(img[:1])
    assert list(w.children[0].options) == [1, 2, 4, 8]
    w.children[0].value = 8


def test_cfg_explorer_frame_and_widget():
    from minidiff.widgets import cfg_explorer, cfg_explorer_frame

    def model(x, t, y):  # "conditional" model: the label shifts the prediction
        return x + (y.float() - 5).reshape(-1, 1, 1, 1) * 0.01

    x1 = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([1, 9])
    a = cfg_explorer_frame(model, x1, y, 1.0, null=5, steps=4, nrow=2)
    b = cfg_explorer_frame(model, x1, y, 1.0, null=5, steps=4, nrow=2)
    c = cfg_explorer_frame(model, x1, y, 4.0, null=5, steps=4, nrow=2)
    assert a.shape == (10, 19) and np.array_equal(a, b) and not np.array_equal(a, c)
    w = cfg_explorer(model, x1, y, null=5, steps=4, nrow=2)
    w.children[0].value = 3.0


def test_latent_walk_frame_ends_at_each_reconstruction_and_widget_builds():
    from minidiff.data import moving_digits
    from minidiff.pretrained import load_pretrained
    from minidiff.widgets import latent_explorer, latent_walk_frame

    vae, _ = load_pretrained("video-vae")
    md = moving_digits(3, seed=5)
    with torch.no_grad():
        z = vae.encode(md.videos)[0]
        recon = vae.decode(z).clamp(-1, 1)
    assert torch.allclose(latent_walk_frame(vae, z[0], z[1], 0.0)[0], recon[0], atol=1e-5)
    assert torch.allclose(latent_walk_frame(vae, z[0], z[1], 1.0)[0], recon[1], atol=1e-5)
    mid = latent_walk_frame(vae, z[0], z[1], 0.5)
    assert mid.shape == (1, 3, 9, 32, 32) and not torch.allclose(mid[0], recon[0], atol=1e-2)
    with pytest.raises(ValueError, match="weight lam"):
        latent_walk_frame(vae, z[0], z[1], 1.5)
    with pytest.raises(ValueError, match="same shape"):
        latent_walk_frame(vae, z[0], z[0, :, :2], 0.5)
    w = latent_explorer(vae, md.videos, md.captions)
    w.children[1].value = 0.3
    plt.close("all")


def test_prompt_search_frame_ranks_the_matching_caption_first_and_reports_unknown_words():
    from minidiff.data import caption_table, moving_digits
    from minidiff.models.vae import encode_videos
    from minidiff.pretrained import load_pretrained
    from minidiff.widgets import prompt_search, prompt_search_frame

    clip, _ = load_pretrained("text-encoder")
    vae, _ = load_pretrained("video-vae")
    md = moving_digits(40, seed=3)
    lat = encode_videos(vae, md.videos)
    table = caption_table()
    with torch.no_grad():
        ce, ve = clip.embed_text(table), clip.embed_video(lat)
    f = prompt_search_frame(clip, md.captions[0], table, ce, ve, k=5)
    assert f.error is None and f.captions[0][0] == md.captions[0]
    assert [s for _, s in f.captions] == sorted((s for _, s in f.captions), reverse=True)
    assert len(f.videos) == 5 and all(0 <= i < 40 for i, _ in f.videos)
    bad = prompt_search_frame(clip, "a purple 3", table, ce, ve)
    assert bad.error and "purple" in bad.error and bad.captions == []
    w = prompt_search(clip, table, md.videos, lat)
    w.children[0].value = "moving up"
    w.children[0].value = "a zebra"  # an unknown word is shown, not raised
    plt.close("all")


def test_widget_output_area_holds_the_figure_and_redraws(photo):
    """The figure is in the Output widget's own outputs (a PNG), so it shows without the capture protocol and a
    headless test can see it change."""
    w = noising_explorer(photo, T=100)
    out = w.children[-1]
    first = out.outputs[0]["data"]["image/png"]
    assert len(out.outputs) == 1 and len(first) > 1000
    w.children[0].children[0].value = 99
    assert len(out.outputs) == 1 and out.outputs[0]["data"]["image/png"] != first
    assert plt.get_fignums() == []  # every figure it drew is closed


def test_a_widget_keeps_its_picture_when_another_thread_closes_every_pyplot_figure(photo, monkeypatch):
    """ipykernel 7 runs some requests in threads of their own (JupyterLab 4.6 sends widget messages over a subshell),
    and after every execution the inline backend's `flush_figures` calls plt.close("all"). Seen in the browser test:
    that landed while the patch explorer was drawing, and the widget lost its picture (an empty output). Widgets
    draw on figures outside pyplot, so the same interleaving, forced here, leaves the picture in place."""
    import minidiff.widgets as widgets

    real = widgets.draw_patch_frame

    def closed_halfway(frame, axes):
        plt.close("all")  # what flush_figures does, at the worst moment
        real(frame, axes)
        plt.close("all")

    w = widgets.patch_explorer(photo)
    out = w.children[-1]
    before = out.outputs[0]["data"]["image/png"]
    monkeypatch.setattr(widgets, "draw_patch_frame", closed_halfway)
    w.children[0].value = 4
    (shown,) = out.outputs
    assert shown["data"]["image/png"] != before and len(shown["data"]["image/png"]) > 1000
    assert plt.get_fignums() == []


def test_a_widget_says_what_it_is_where_it_cannot_render_and_when_it_is_busy(photo):
    """Where a widget cannot be drawn (untrusted notebook, web viewer) Jupyter shows its text form: it names the
    widget and says a still follows, instead of "VBox(children=(HBox(...". The status line says the controls need a
    running kernel, and reads "busy" only while the callback runs."""
    from minidiff.widgets import IDLE_NOTE

    w = noising_explorer(photo, T=100)
    text = w._repr_mimebundle_()["text/plain"]
    assert text.startswith("[noising explorer: an interactive widget") and "VBox" not in text and len(text) <= 110
    status = w.children[-2]
    seen = []
    status.observe(lambda ch: seen.append(ch["new"]), names="value")
    w.children[0].children[0].value = 50
    assert len(seen) == 2 and "⏳" in seen[0] and seen[1] == status.value == IDLE_NOTE
    assert "kernel" in IDLE_NOTE and "still" in IDLE_NOTE


def test_prompt_search_shows_an_unknown_word_as_text_not_an_empty_figure():
    from minidiff.data import caption_table, moving_digits
    from minidiff.models.vae import encode_videos
    from minidiff.pretrained import load_pretrained
    from minidiff.widgets import prompt_search

    clip, _ = load_pretrained("text-encoder")
    vae, _ = load_pretrained("video-vae")
    md = moving_digits(8, seed=3)
    w = prompt_search(clip, caption_table(), md.videos, encode_videos(vae, md.videos))
    out = w.children[-1]
    assert "image/png" in out.outputs[0]["data"]
    w.children[0].value = "a purple 7"
    (msg,) = out.outputs
    assert msg["output_type"] == "stream" and "purple" in msg["text"] and "unknown" in msg["text"].lower()
    w.children[0].value = "a red 7"
    assert "image/png" in out.outputs[0]["data"]
    plt.close("all")


def test_slow_explorers_sample_once_when_built_and_only_look_up_after(photo):
    """The DDIM and guidance explorers sample every setting when built; moving a slider calls the model no more."""
    from minidiff.widgets import cfg_explorer, ddim_explorer

    calls = []

    def model(x, t, y=None):
        calls.append(1)
        return 0.5 * x

    s = make_schedule("linear", 1000)
    x_T = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    w = ddim_explorer(model, s, x_T, torch.arange(4), nrow=2, steps=(1, 5), etas=(0.0, 1.0))
    assert len(calls) == 2 * (1 + 5)
    first = w.children[-1].outputs[0]["data"]["image/png"]
    steps, eta = w.children[0].children
    steps.value, eta.value = 5, 1.0
    assert len(calls) == 12 and w.children[-1].outputs[0]["data"]["image/png"] != first
    with pytest.raises(ValueError, match="at least one"):
        ddim_explorer(model, s, x_T, steps=())
    calls.clear()
    c = cfg_explorer(model, x_T, torch.arange(4), null=9, steps=3, nrow=2, scales=(1.0, 3.0))
    assert len(calls) == 3 + 3
    c.children[0].value = 3.0
    assert len(calls) == 6


def test_animations_are_self_contained_gifs():
    """animate_videos gives an image/gif output (plays offline, untrusted, on web viewers), one frame per time step."""
    import base64
    import io

    from PIL import Image

    from minidiff.viz import animate_videos

    v = torch.linspace(-1, 1, 2 * 3 * 5 * 8 * 8).reshape(2, 3, 5, 8, 8)
    a = animate_videos(v, ["a", "b"])
    bundle = a._repr_mimebundle_()
    assert set(bundle) == {"image/gif", "text/plain"} and "2 video(s), 5 frames" in bundle["text/plain"]
    with Image.open(io.BytesIO(base64.b64decode(bundle["image/gif"]))) as gif:
        assert gif.n_frames == 5 and gif.info["loop"] == 0
    with pytest.raises(ValueError, match="expected videos"):
        animate_videos(torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match="1 titles for 2 videos"):
        animate_videos(v, ["only one"])
    for fps in (0, -3, 2.5):
        with pytest.raises(ValueError, match="fps"):
            animate_videos(v, fps=fps)


def test_sdedit_explorer_frames_follow_the_strength_and_the_widget_redraws():
    from minidiff.data import load_digits
    from minidiff.pretrained import load_pretrained
    from minidiff.widgets import draw_sdedit_frame, sdedit_explorer, sdedit_explorer_frame

    model, _ = load_pretrained("flow-digits")
    judge, _ = load_pretrained("digit-classifier")
    x, y = load_digits(16, split="reference")
    images, target = x[:3], (y[:3] + 1) % 10
    none = sdedit_explorer_frame(model, images, target, 0.0, judge, steps=4)
    full = sdedit_explorer_frame(model, images, target, 1.0, judge, steps=4)
    assert torch.equal(none.edits, images.clamp(-1, 1)) and not torch.equal(full.edits, none.edits)
    assert "strength 1.00" in full.title and f"/{len(images)}" in full.title
    fig = plt.figure()
    draw_sdedit_frame(full, fig)
    plt.close(fig)
    w = sdedit_explorer(model, images, target, judge, steps=4, strengths=(0.0, 0.5))
    assert set(w.frames) == {0.0, 0.5}
    w.children[0].value = 0.0
    with pytest.raises(ValueError, match="strengths"):
        sdedit_explorer(model, images, target, judge, strengths=(1.5,))
