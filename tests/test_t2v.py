"""The text-to-video pipeline, the shipped t2v-mmdit, its command line and the prompt playground."""

import dataclasses
import math
import subprocess
import sys
import time
from pathlib import Path

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pipe():
    from minidiff.pipeline import TextToVideo

    return TextToVideo.from_pretrained("t2v-mmdit", device="cpu")


def test_same_seed_same_video_other_seed_other_video(pipe):
    a = pipe(["a red 3 moving left"], steps=4, seed=3)
    b = pipe(["a red 3 moving left"], steps=4, seed=3)
    c = pipe(["a red 3 moving left"], steps=4, seed=4)
    assert a.shape == (1, 3, 9, 32, 32) and a.min() >= -1 and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_bad_prompts_and_sizes_give_clear_errors(pipe):
    with pytest.raises(ValueError, match="unknown word.*'purple'.*knows only: 0 1 2"):
        pipe(["a purple 3 moving left"], steps=2)
    with pytest.raises(ValueError, match="empty prompt"):
        pipe([""], steps=2)
    with pytest.raises(ValueError, match="non-empty list of captions"):
        pipe([], steps=2)
    with pytest.raises(ValueError, match=r"T = 4n \+ 1 frames"):
        dataclasses.replace(pipe, frames=8)(["a red 3 moving left"], steps=2)
    with pytest.raises(ValueError, match="not divisible by the MMDiT's patch size 2"):
        dataclasses.replace(pipe, height=34)(["a red 3 moving left"], steps=2)


def test_shipped_model_reproduces_its_cards_adherence(pipe):
    """60 training captions, one video each: every attribute's accuracy within 4 binomial standard errors (+ 0.02) of
    the card's figure (measured on all 230 captions, twice)."""
    from minidiff.data import caption_attributes, caption_table
    from minidiff.eval import judge_videos, split_captions
    from minidiff.pretrained import load_card, load_pretrained

    card = load_card("t2v-mmdit")["metrics"]["train"]
    judge, _ = load_pretrained("digit-classifier")
    idx = split_captions("train")[::4][:60]
    videos = pipe([caption_table()[i] for i in idx.tolist()], seed=11)
    acc = judge_videos(videos, judge, *caption_attributes(idx)).accuracy
    for attr in ("digit", "colour", "direction", "all_three"):
        p = card[attr]
        tol = 4 * math.sqrt(max(p * (1 - p), 0.01) / len(idx)) + 0.02
        assert abs(acc[attr] - p) <= tol, (attr, acc[attr], p, tol)


def test_cli_writes_a_gif_that_decodes_to_the_expected_frames(tmp_path):
    from PIL import Image

    out = tmp_path / "two.gif"
    r = subprocess.run([sys.executable, "-m", "minidiff", "generate", "a red 3 moving left", "a blue 7 moving up",
                        "-o", str(out), "--steps", "3", "--seed", "1", "--scale", "2", "--device", "cpu"],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "wrote" in r.stdout
    with Image.open(out) as gif:
        assert gif.n_frames == 9
        assert gif.size == (2 * 32 * 2 + 2, 2 * 32)  # two videos side by side, 2x, a 2-pixel gap
    assert [p.name for p in tmp_path.iterdir()] == ["two.gif"]  # no temporary file left behind


@pytest.mark.parametrize("args,message", [
    (["a purple 3 moving left"], "unknown word"),
    ([""], "empty prompt"),
    (["a red 3 moving left", "--steps", "0"], "--steps must be a positive integer"),
    (["a red 3 moving left", "-o", "out.png"], "must be a .gif"),
    (["a red 3 moving left", "--model", "no-such-model"], "no pretrained model 'no-such-model'"),
])
def test_cli_bad_input_exits_2_with_a_message(tmp_path, args, message):
    r = subprocess.run([sys.executable, "-m", "minidiff", "generate", *args, "--device", "cpu"], capture_output=True,
                       text=True, cwd=tmp_path)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert message in r.stderr and "Traceback" not in r.stderr
    if message == "unknown word":
        assert "knows only: 0 1 2 3 4 5 6 7 8 9 a blue cyan down green left" in r.stderr
    assert not list(tmp_path.glob("*.gif"))


def test_console_script_is_declared():
    text = (ROOT / "pyproject.toml").read_text()
    assert 'minidiff = "minidiff.__main__:main"' in text


def test_prompt_playground_frame_and_widget(pipe):
    import matplotlib.pyplot as plt

    from minidiff.pretrained import load_pretrained
    from minidiff.widgets import draw_playground_frame, prompt_playground, prompt_playground_frame

    judge, _ = load_pretrained("digit-classifier")
    f = prompt_playground_frame(pipe, "a green 4 moving down", 3, 4.0, seed=2, judge=judge)
    assert f.error is None and f.video.shape == (1, 3, 9, 32, 32)
    assert set(f.judged) == {"digit", "colour", "direction"}
    assert f.asked == {"digit": "4", "colour": "green", "direction": "down"} and f.heldout is False
    marks = {k: ("✓" if f.judged[k] == v else "✗") for k, v in f.asked.items()}
    assert f.verdict == ("judge reads: " + ", ".join(f"{k} {f.judged[k]} {marks[k]}" for k in f.judged)
                         + " (a training combination)")
    from minidiff.widgets import asked_attributes

    assert asked_attributes("a green 1 moving right") == ({"digit": "1", "colour": "green", "direction": "right"},
                                                          False)
    assert asked_attributes("a green 0 moving left")[1] is True  # (0, green, left) is held out of training
    assert asked_attributes("a red 3") == ({"digit": "3", "colour": "red"}, None)
    again = prompt_playground_frame(pipe, "a green 4 moving down", 3, 4.0, seed=2)
    assert torch.equal(again.video, f.video)
    bad = prompt_playground_frame(pipe, "a zebra", 3, 4.0)
    assert bad.video is None and "zebra" in bad.error
    draw_playground_frame(f, plt.figure())
    draw_playground_frame(bad, plt.figure())
    w = prompt_playground(pipe, judge)
    w.children[0].value = "a red 1 moving up"
    w.children[0].value = "a zebra"  # shown, not raised
    plt.close("all")


def test_save_gif_rejects_bad_paths(tmp_path):
    from minidiff.viz import save_gif

    v = torch.zeros(1, 3, 2, 4, 4)
    with pytest.raises(ValueError, match=r"end in \.gif"):
        save_gif(v, str(tmp_path / "x.png"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save_gif(v, str(tmp_path / "missing" / "x.gif"))
    with pytest.raises(ValueError, match=r"videos \(B, C, T, H, W\)"):
        save_gif(torch.zeros(3, 4), str(tmp_path / "x.gif"))


def test_prompt_playground_shows_a_labelled_preview_first_and_remembers_what_it_sampled(pipe):
    """A change shows a 2-step preview of the same prompt at once, then the video with the chosen steps; going back to
    a setting already sampled calls the pipeline no more."""
    import matplotlib.pyplot as plt

    from minidiff.widgets import PREVIEW_STEPS, prompt_playground

    calls = []

    class Counting:
        cfg_scale = pipe.cfg_scale

        def __call__(self, prompts, steps, cfg_scale, seed):
            calls.append(steps)
            return pipe(prompts, steps=steps, cfg_scale=cfg_scale, seed=seed)

    w = prompt_playground(Counting())
    assert calls == [PREVIEW_STEPS, 20]
    out = w.children[-1]
    shown = []
    out.observe(lambda ch: shown.append(ch["new"]), names="outputs")
    seed = w.children[1].children[2]
    seed.value = 1
    assert calls[2:] == [PREVIEW_STEPS, 20] and len(shown) == 2
    assert shown[0][0]["data"]["image/png"] != shown[1][0]["data"]["image/png"]
    seed.value = 0  # sampled before: no preview, no sampling
    assert len(calls) == 4 and len(shown) == 3
    steps = w.children[1].children[0]
    steps.value = 1  # fewer steps than the preview: no preview
    assert calls[4:] == [1]
    plt.close("all")


def test_recipe_stages_tasks_and_same_seed_gives_the_same_weights():
    """The recipe's one stage mixes stills (the first latent frame alone, nothing given) and image-to-video (the
    whole video, its first frame given); an optional stage of stills alone comes first; the same seed gives the same
    model, bit for bit; the card records each stage; the callback is told which stage it is in."""
    from minidiff import recipes
    from minidiff.models.mmdit import MMDiT

    seen = []

    def callback(stage, step, ema):
        seen.append((stage, step))
        time.sleep(0.5)  # a callback's time (e.g. a curve's evaluations) is not training time

    kw = dict(steps=6, image_steps=3, n_videos=64, evaluate=False, progress=False, batch_size=4)
    inputs = []
    real_forward = MMDiT.forward

    def spy(self, x, t, txt, y_vec, **k):
        inputs.append((x.shape[2], k.get("cond") is not None))
        return real_forward(self, x, t, txt, y_vec, **k)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(MMDiT, "forward", spy)
        run = recipes.t2v_mmdit(callback=callback, callback_every=1, **kw)
    a, recipe, fields = run.result, run.card["recipe_config"], run.card
    b = recipes.t2v_mmdit(**kw).result
    for (k, va), vb in zip(a.model.state_dict().items(), b.model.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k
    assert inputs[:3] == [(1, False)] * 3  # stills alone: the first latent frame, nothing given
    assert set(inputs[3:]) <= {(1, False), (3, True)}  # then stills or image-to-video, one task per step
    assert fields["stages"]["stills"]["steps"] == 3 and fields["stages"]["main"]["steps"] == 6 and a.step == 9
    assert abs(a.minutes - fields["stages"]["stills"]["minutes"] - fields["stages"]["main"]["minutes"]) <= 0.011
    assert [s for s, _ in seen].count("stills") >= 1 and seen[-1][0] == "main"
    assert recipe["tasks"] == {"stills": {"t2i": 1.0}, "main": recipes.T2V_MMDIT["tasks"]}
    assert recipe["image_train"]["steps"] == 3 and "text -> image -> video" in recipe["sampling"]
    assert fields["pipeline"]["shift"] == recipes.T2V_MMDIT["shift"]
    one_run = recipes.t2v_mmdit(steps=2, n_videos=64, evaluate=False, progress=False, batch_size=4)
    one, one_fields = one_run.result, one_run.card
    assert list(one_fields["stages"]) == ["main"] and one.step == 2  # the shipped recipe: one stage
    with pytest.raises(ValueError, match="text_features must hold"):
        recipes.t2v_mmdit(text_features=(torch.zeros(3, 8, 64), torch.zeros(3, 64)), **kw)
    with pytest.raises(ValueError, match="'i2v' needs an MMDiT with cond_embed"):
        recipes.t2v_mmdit(config=dataclasses.replace(recipes.T2V_MMDIT["mmdit"], cond_embed=False), **kw)


def test_swapped_captions_the_shipped_model_reads_the_digit_word(pipe):
    """The same noise under captions that differ only in the digit gives different digits, mostly the asked-for ones:
    the model reads the word (a model ignoring it would give 1 distinct digit per noise and accuracy near 0.1)."""
    from minidiff.eval import swapped_captions
    from minidiff.pretrained import load_pretrained

    judge, _ = load_pretrained("digit-classifier")
    r = swapped_captions(dataclasses.replace(pipe, steps=10), judge, n_noises=2)
    assert r["n_videos"] == 20 and sum(map(sum, r["confusion"])) <= 20
    assert r["distinct_digits_per_noise"] >= 4 and r["digit"] >= 0.3, r
    with pytest.raises(ValueError, match="n_noises"):
        swapped_captions(pipe, judge, n_noises=0)


def test_image_stage_data_is_the_first_frame_encoded_alone():
    """The recipe's stills are each video's first latent frame; the causal VAE encodes frame 0 by itself, so that is
    exactly the latent of the first frame as a one-frame video."""
    from minidiff.data import moving_digits
    from minidiff.models.vae import encode_videos
    from minidiff.pretrained import load_pretrained

    vae, _ = load_pretrained("video-vae")
    videos = moving_digits(4, seed=3).videos
    torch.testing.assert_close(encode_videos(vae, videos)[:, :, :1], encode_videos(vae, videos[:, :, :1]),
                               atol=1e-5, rtol=1e-5)


class _Recorder(torch.nn.Module):
    """A stand-in denoiser that records what each call sees and predicts zero."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.calls = []

    def forward(self, x, t, txt, y_vec, cond=None):
        self.calls.append((x.clone(), None if cond is None else cond.clone()))
        return x * self.w


def test_t2v_loss_tasks_choose_what_each_step_practises():
    """t2i: the first latent frame alone; i2v: the whole video with its clean first frame given; t2v: nothing
    given. One task per step, drawn from the loss's generator (so a seed repeats the sequence)."""
    from minidiff.models.mmdit import i2v_condition
    from minidiff.recipes import t2v_loss_fn

    txt, vec = torch.randn(3, 8, 16), torch.randn(3, 16)
    x, y = torch.randn(4, 4, 3, 8, 8), torch.tensor([0, 1, 0, 1])
    for task, frames, given in (("t2i", 1, False), ("i2v", 3, True), ("t2v", 3, False)):
        model = _Recorder()
        t2v_loss_fn(txt, vec, 2, 0.0, 1.0, tasks={task: 1.0})(model, x, y, torch.Generator().manual_seed(0))
        (seen, cond), = model.calls
        assert seen.shape[2] == frames and (cond is not None) == given, task
        if given:  # the clean first frame, not the noisy one the model denoises
            torch.testing.assert_close(cond, i2v_condition(x[:, :, :1], 3))
    mixed = t2v_loss_fn(txt, vec, 2, 0.0, 1.0, tasks={"t2i": 0.5, "i2v": 0.5})

    def sequence(seed):
        model, g = _Recorder(), torch.Generator().manual_seed(seed)
        for _ in range(60):
            mixed(model, x, y, g)
        return [c is not None for _, c in model.calls]

    a = sequence(1)
    assert 15 <= sum(a) <= 45 and a == sequence(1) and a != sequence(2)
    for bad, match in (({"t2x": 1.0}, "tasks must map"), ({"t2i": 0.5}, "add up to 1"),
                       ({"t2i": 1.5, "i2v": -0.5}, "tasks")):
        with pytest.raises(ValueError, match=match):
            t2v_loss_fn(txt, vec, 2, 0.0, 1.0, tasks=bad)


def test_text_to_image_to_video_keeps_the_image_and_a_given_frame_exactly():
    """Route t2i2v (an MMDiT with cond_embed): the first latent frame is sampled alone, as the frames=1 pipeline
    with the same seed samples it, then kept exactly while the rest of the video is sampled; a given first frame
    (image-to-video) is kept the same way."""
    from minidiff.models.mmdit import MMDiT
    from minidiff.pipeline import TextToVideo
    from minidiff.pretrained import load_pretrained
    from minidiff.recipes import T2V_MMDIT

    torch.manual_seed(0)
    mmdit = MMDiT(dataclasses.replace(T2V_MMDIT["mmdit"], repa_dim=0)).eval()
    for p in mmdit.parameters():
        torch.nn.init.normal_(p, std=0.02)
    vae, _ = load_pretrained("video-vae")
    clip, _ = load_pretrained("text-encoder")
    pipe = TextToVideo(mmdit, vae, clip.text_encoder.eval(), steps=2, cfg_scale=3.0, shift=3.0)
    assert pipe.route == "t2i2v"
    prompts = ["a red 3 moving left", "a blue 7 moving up"]
    video = pipe.sample_latents(prompts, seed=5)
    still = dataclasses.replace(pipe, frames=1).sample_latents(prompts, seed=5)
    assert video.shape == (2, 4, 3, 16, 16) and still.shape == (2, 4, 1, 16, 16)
    torch.testing.assert_close(video[:, :, :1], still, atol=0, rtol=0)
    given = torch.randn(2, 4, 1, 16, 16)
    out = pipe.sample_latents(prompts, seed=5, first_frame=given)
    assert torch.equal(out[:, :, :1], given) and not torch.equal(out[:, :, 1:], video[:, :, 1:])
    with pytest.raises(ValueError, match="first_frame must be one scaled latent frame"):
        pipe.sample_latents(prompts, first_frame=given[:1])
