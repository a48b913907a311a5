"""Lesson 09's pieces on the shipped models: caption-swap editing by inversion, longer videos, a new word."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from minidiff.data import COLOUR_NAMES, COLOURS, moving_digits, retint
from minidiff.eval import judge_videos
from minidiff.long_video import extend_video
from minidiff.models.text import add_words
from minidiff.models.vae import encode_videos
from minidiff.pipeline import TextToVideo
from minidiff.pretrained import load_pretrained
from minidiff.recipes.concept import CONCEPT_TARGETS, CONCEPT_TRAIN, teach_word
from minidiff.train import TrainConfig, train


@pytest.fixture(scope="module")
def pipe():
    return TextToVideo.from_pretrained(device="cpu")


def test_pipeline_inversion_round_trip_and_bad_latents(pipe):
    data = moving_digits(2, seed=3)
    x0 = encode_videos(pipe.vae, data.videos)
    noise = pipe.invert(x0, data.captions, steps=20)
    back = pipe.sample_latents(data.captions, steps=20, noise=noise, cfg_scale=1.0)
    assert float((back - x0).pow(2).mean()) < 0.1 * float(x0.pow(2).mean())
    with pytest.raises(ValueError, match="scaled latents, shape"):
        pipe.invert(x0[:, :, :2], data.captions)


def test_extend_video_chains_segments_from_the_last_frame(pipe):
    board = ["a red 3 moving left", "a red 3 moving right", "a red 3 moving left"]
    video = extend_video(pipe, board, seed=1, steps=4)
    assert video.shape == (1, 3, 9 + 8 + 8, 32, 32)
    assert torch.equal(video[:, :, :9], pipe("a red 3 moving left", steps=4, seed=1))  # segment 1 is a plain sample
    assert torch.equal(extend_video(pipe, board, seed=1, steps=4), video)  # a seed gives the same video
    noisy = extend_video(pipe, board[:2], seed=1, steps=4, context_noise=0.5)
    assert torch.equal(noisy[:, :, :9], video[:, :, :9]) and not torch.equal(noisy[:, :, 9:17], video[:, :, 9:17])
    with pytest.raises(ValueError, match="same number of prompts"):
        extend_video(pipe, [["a red 3 moving left"] * 2, "a red 3 moving up"])
    with pytest.raises(ValueError, match="non-empty list of segments"):
        extend_video(pipe, "a red 3 moving left")
    with pytest.raises(ValueError, match="context_noise"):
        extend_video(pipe, board, context_noise=1.5)


def test_add_words_keeps_every_old_caption_and_knows_the_new_word(pipe):
    bigger = add_words(pipe.text_encoder, ["Orange"])
    old = ["a red 3 moving left", "a yellow 9 moving up", ""]  # "yellow" sorts after "orange": its row moved
    with torch.no_grad():
        for a, b in zip(pipe.text_encoder(old), bigger(old), strict=True):
            assert torch.equal(a, b)
        new = bigger(["a orange 3 moving left", "a red 3 moving left"])[1]
    assert float((new[0] - new[1]).norm()) > 1.0
    with pytest.raises(ValueError, match="new single words"):
        add_words(pipe.text_encoder, ["red"])
    with pytest.raises(ValueError, match="unknown word"):
        pipe.text_encoder(["a orange 3 moving left"])


def test_retint_and_a_judge_with_a_new_colour():
    data = moving_digits(6, seed=2)
    orange = retint(data.videos, (1.0, 0.55, 0.15))
    assert torch.allclose(((orange + 1) / 2).amax(1), ((data.videos + 1) / 2).amax(1), atol=1e-6)  # the same ink
    judge, _ = load_pretrained("digit-classifier")
    palette = {**COLOURS, "orange": (1.0, 0.55, 0.15)}
    read = judge_videos(orange, judge, palette=palette)
    assert (read.colours == len(COLOURS)).all()
    assert torch.equal(judge_videos(data.videos, judge, palette=palette).colours, data.colours)
    with pytest.raises(ValueError, match="three numbers in"):
        retint(data.videos, (2.0, 0.0, 0.0))


def test_teach_word_trains_only_adapters_and_leaves_the_shipped_pipeline(pipe):
    before = {k: v.clone() for k, v in pipe.mmdit.state_dict().items()}
    taught, result = teach_word(pipe, "orange", (1.0, 0.55, 0.15), n_videos=8, progress=False,
                                train_config=dataclasses.replace(CONCEPT_TRAIN, steps=3, batch_size=4))
    assert result.step == 3 and "orange" in taught.vocabulary and "orange" not in pipe.vocabulary
    assert all(torch.equal(v, pipe.mmdit.state_dict()[k]) for k, v in before.items())
    assert set(taught.mmdit.state_dict()) == set(before)  # LoRA merged back: a plain MMDiT again
    changed = [k for k, v in taught.mmdit.state_dict().items() if not torch.equal(v, before[k])]
    targets = tuple(f"{t}.weight" for t in CONCEPT_TARGETS)
    assert changed and all(k.endswith(targets) for k in changed), changed
    assert any(k.endswith("qkv.weight") for k in changed) and any(k.endswith("lin.weight") for k in changed)
    assert taught("a orange 3 moving left", steps=2).shape == (1, 3, 9, 32, 32)


def test_training_a_model_with_nothing_to_train_says_so():
    frozen = torch.nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="nothing to train"):
        train(frozen, lambda m, x, y, g: m(x).pow(2).mean(), (torch.randn(8, 2), None),
              TrainConfig(steps=1, batch_size=4), progress=False)


def test_back_and_forth_storyboard_stays_on_training_combinations():
    from minidiff.data import HELDOUT_COMBOS
    from minidiff.long_video import REVERSE, back_and_forth

    board, d, c, m = back_and_forth(3, every=5)
    assert len(board) == 3 and len({len(b) for b in board}) == 1 == len({len(d), len(c), len(board[0])})
    assert torch.equal(m[1], torch.tensor([REVERSE[int(x)] for x in m[0]])) and torch.equal(m[2], m[0])
    for k in range(3):
        assert not any((int(a), int(b), int(x)) in HELDOUT_COMBOS for a, b, x in zip(d, c, m[k], strict=True))
    assert board[1][0].startswith(f"a {board[0][0].split()[1]} {int(d[0])} moving")


def test_conditioning_augmentation_noises_only_the_given_frame():
    from minidiff.recipes.video import t2v_loss_fn

    seen = []

    class Spy(torch.nn.Module):
        def forward(self, x, t, txt, y_vec, cond=None):
            seen.append(cond)
            return torch.zeros_like(x)

    x = torch.randn(4, 4, 3, 4, 4)
    txt, vec = torch.randn(2, 8, 64), torch.randn(2, 64)
    for noise in (0.0, 0.5):
        loss = t2v_loss_fn(txt, vec, 1, 0.0, 1.0, tasks={"i2v": 1.0}, context_noise=noise)
        loss(Spy(), x, torch.zeros(4, dtype=torch.long), torch.Generator().manual_seed(0))
    clean, noisy = seen
    assert torch.equal(clean[:, 1:, :1], x[:, :, :1]) and not torch.equal(noisy[:, 1:, :1], x[:, :, :1])
    assert torch.equal(noisy[:, :1], clean[:, :1]) and not noisy[:, 1:, 1:].any()  # the mask; other frames empty
    with pytest.raises(ValueError, match="context_noise"):
        t2v_loss_fn(txt, vec, 1, 0.0, 1.0, context_noise=2.0)


def test_match_colour_removes_a_colour_cast_and_keeps_the_shape():
    from minidiff.long_video import match_colour

    data = moving_digits(3, seed=4)
    cast = retint(data.videos, (0.8, 0.15, 0.6))  # the red digits' ink with a blue cast
    red = retint(data.videos, (1.0, 0.15, 0.15))
    fixed = match_colour(cast, red[:, :, :1])
    judge, _ = load_pretrained("digit-classifier")
    assert (judge_videos(cast, judge).colours == COLOUR_NAMES.index("magenta")).all()
    assert (judge_videos(fixed, judge).colours == COLOUR_NAMES.index("red")).all()

    def hue(v):  # the mean ink colour, scaled by its largest channel
        u = (v + 1) / 2
        m = (u * (u.amax(1, keepdim=True) > 0.5)).sum((0, 2, 3, 4))
        return m / m.max()

    assert torch.allclose(hue(fixed), hue(red), atol=0.05), (hue(fixed), hue(red))
    assert torch.equal(fixed > -1, cast > -1)  # the same pixels hold ink: the shape is untouched
    dark = torch.full_like(cast, -1.0)
    assert torch.equal(match_colour(dark, red), dark)  # no ink: unchanged
    with pytest.raises(ValueError, match="same B"):
        match_colour(cast, red[:2])


def test_lesson_09_helpers_refuse_bad_input_clearly():
    from minidiff.long_video import back_and_forth, judge_segments, match_colour
    from minidiff.recipes.concept import word_captions

    judge, _ = load_pretrained("digit-classifier")
    videos = moving_digits(2, seed=1).videos
    _, d, c, m = back_and_forth(3, every=40)
    with pytest.raises(ValueError, match="at least 25 frames"):
        judge_segments(videos[:len(d)], judge, d, c, m)
    with pytest.raises(ValueError, match="finite"):
        match_colour(videos * float("nan"), videos)
    with pytest.raises(ValueError, match="palette must map colour names"):
        judge_videos(videos, judge, palette={"grey": (0.5, 0.5)})
    prompts, digits, directions = word_captions("orange")
    assert len(prompts) == 40 == len(set(prompts)) and prompts[0] == "a orange 0 moving left"
    assert prompts[-1] == f"a orange 9 moving {['left', 'right', 'up', 'down'][int(directions[-1])]}"
