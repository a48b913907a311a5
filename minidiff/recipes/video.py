"""The video recipes: lesson 06's causal video VAE, lesson 07's tiny CLIP (the text encoder), and lesson 08's
text-to-video MMDiT with its loss (`t2v_loss_fn`: stills and image-to-video steps, caption dropout, REPA)."""

from __future__ import annotations

from dataclasses import replace

import torch

from .. import distributed, flow, repa
from ..checks import check_number
from ..data import COLOUR_NAMES, DIRECTION_NAMES, caption_index, caption_table, caption_words, moving_digits
from ..eval import retrieval_top1, text_probe
from ..guidance import drop_labels
from ..latents import cached_video_latents
from ..models.mmdit import MMDiT, MMDiTConfig, i2v_condition
from ..models.text import TinyCLIP, TinyCLIPConfig
from ..models.vae import VideoVAE, encode_videos
from ..pretrained import load_pretrained
from ..train import TrainConfig, train
from ..utils import seed_everything
from .configs import TEXT_ENCODER, VIDEO_VAE, RecipeRun, run_of, settings, with_overrides


def video_vae(minutes: float | None = None, steps: int | None = None, progress: bool = True,
              checkpoint_path: str | None = None, device: torch.device | str | None = None,
              **overrides) -> RecipeRun:
    """Lesson 06's causal video VAE on moving digits (train combinations), then its latent scaling factor:
    config.scaling_factor = 1 / std of the latent means of 1,000 training videos."""
    r = VIDEO_VAE
    seed_everything(r["train"].seed)
    cfg = with_overrides(r["train"], minutes, steps, device, **overrides)
    videos = moving_digits(r["n_videos"], seed=0, split="train").videos
    result = train(VideoVAE(r["vae"]), lambda m, x, y, g: m.loss(x, g), (videos, None), cfg, device=device,
                   checkpoint_path=checkpoint_path, progress=progress)
    vae = result.ema.cpu().eval()
    with torch.no_grad():
        mean, _ = vae.encode(videos[:1000])
    vae.config.scaling_factor = round(1.0 / float(mean.std()), 5)
    recipe = {"data": f"moving digits, {r['n_videos']} train-split videos (seed 0), 9 frames of 32x32",
              "vae": r["vae"].to_dict() | {"scaling_factor": "1 / std of latent means, 1000 videos"},
              "train": cfg.to_dict()}
    return run_of("video-vae", "vae", result, recipe)


def text_encoder(minutes: float | None = None, steps: int | None = None, progress: bool = True,
                 checkpoint_path: str | None = None, n_videos: int | None = None, n_eval: int = 500,
                 device: torch.device | str | None = None, word_loss_weight: float | None = None,
                 **overrides) -> RecipeRun:
    """Lesson 07's tiny CLIP: the text encoder trained contrastively against the shipped video VAE's latents of
    moving digits (train combinations), with a per-token word loss. `n_videos` (default the recipe's) and `n_eval`
    (videos per split for the retrieval metrics) let the lesson run a smaller version; `word_loss_weight` (default
    the recipe's; 0: CLIP's loss alone) lets the benchmarks swap the encoder's words. The card's "metrics" hold
    caption retrieval on both splits and the text probe."""
    r = TEXT_ENCODER
    seed_everything(r["train"].seed)
    cfg = with_overrides(r["train"], minutes, steps, device, **overrides)
    vae, _ = load_pretrained("video-vae")
    n_videos = n_videos or r["n_videos"]
    md = moving_digits(n_videos, seed=2, split="train")
    latents = encode_videos(vae, md.videos)
    index = caption_index(md.digits, md.colours, md.directions)
    table = caption_table()
    config = TinyCLIPConfig.from_dict(r["clip"].to_dict())
    config.text.words = caption_words()
    if word_loss_weight is not None:
        config.word_loss_weight = word_loss_weight
    result = train(TinyCLIP(config), lambda m, x, y, g: m.loss(x, [table[i] for i in y.tolist()]),
                   (latents, index), cfg, device=device, checkpoint_path=checkpoint_path, progress=progress)
    clip = result.ema.cpu().eval()
    metrics = {}
    for split in ("train", "heldout"):
        ev = moving_digits(n_eval, seed=3, split=split)
        metrics[f"retrieval_top1_{split}"] = round(retrieval_top1(
            clip, encode_videos(vae, ev.videos), caption_index(ev.digits, ev.colours, ev.directions)), 4)
    metrics["source"] = f"recipes.text_encoder: {n_eval} videos per split (seed 3), top-1 caption among all 240"
    metrics["text_probe"] = text_probe(*text_table(clip, table))
    recipe = {"data": f"{n_videos} moving-digit videos (train split, seed 2) as video-vae latents",
              "word_loss_weight": config.word_loss_weight, "train": cfg.to_dict()}
    return run_of("text-encoder", "tiny-clip", result, recipe, metrics=metrics)


# ------------------------------------------------------------------------------------------- text to video


def text_table(clip, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """The frozen text encoder's (txt, y_vec) for a list of prompts, computed once (Open-Sora and DiffSynth-Studio
    treat the condition encoders as frozen too, so their outputs can be cached)."""
    with torch.no_grad():
        return clip.text_encoder(prompts)


T2V_TASKS = ("t2i", "i2v", "t2v")


def check_tasks(tasks: object) -> dict[str, float]:
    """{task: probability} over T2V_TASKS, probabilities >= 0 adding up to 1."""
    if not isinstance(tasks, dict) or not tasks or set(tasks) - set(T2V_TASKS):
        raise ValueError(f"tasks must map some of {T2V_TASKS} to probabilities, got {tasks!r}")
    total = sum(check_number(f"tasks[{k!r}]", v, low=0.0) for k, v in tasks.items())
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"the task probabilities must add up to 1, got {total:g} ({tasks})")
    return dict(tasks)


def t2v_loss_fn(txt_table: torch.Tensor, vec_table: torch.Tensor, null_index: int, text_dropout: float,
                shift: float, joint: bool = True, repa_encoder: torch.nn.Module | None = None,
                repa_weight: float = 0.0, tasks: dict[str, float] | None = None, context_noise: float = 0.0):
    """Rectified flow on scaled video latents, conditioned on caption `y` (an index into the text tables):
    the caption is dropped to the empty one ("", index `null_index`) with probability `text_dropout` for guidance
    (txt and y_vec together if `joint`, else each on its own, as Open-Sora does); t is logit-normal, then shifted by
    `shift`; the target is v = noise - x_0. With a `repa_encoder` (a frozen video tower with .features), REPA's
    alignment term is added with `repa_weight` (minidiff.repa).

    `tasks` ({task: probability}, default {"t2v": 1}) says what each step practises on its batch of latent videos,
    one task per step: "t2i" the first latent frame alone (an image: the causal VAE encodes frame 0 by itself),
    "i2v" the whole video with its first latent frame given (`i2v_condition`, for an MMDiT with cond_embed), "t2v"
    the whole video with nothing given. `context_noise` > 0 is conditioning augmentation (lesson 09): each i2v step
    gives its first latent frame noised to a level drawn uniformly in [0, context_noise], (1 - s) x + s eps."""
    tasks = check_tasks(tasks or {"t2v": 1.0})
    context_noise = check_number("context_noise", context_noise, 0.0, 1.0)
    names, weights = list(tasks), torch.tensor(list(tasks.values()), dtype=torch.float64)

    def loss_fn(model, x, y, g):
        task = names[int(torch.multinomial(weights, 1, generator=g))] if len(names) > 1 else names[0]
        it = drop_labels(y, null_index, text_dropout, g)
        iv = it if joint else drop_labels(y, null_index, text_dropout, g)
        cond = {"txt": txt_table.to(x.device)[it], "y_vec": vec_table.to(x.device)[iv]}
        if task == "t2i":
            x = x[:, :, :1]
        elif task == "i2v":
            known = x[:, :, :1]
            if context_noise > 0:  # conditioning augmentation: the given frame as a noisy, imperfect one
                s = (torch.rand(x.shape[0], generator=g) * context_noise).to(x.device).view(-1, 1, 1, 1, 1)
                known = (1 - s) * known + s * torch.randn(known.shape, generator=g).to(x.device)
            cond["cond"] = i2v_condition(known, x.shape[2])
        if repa_encoder is None:
            return flow.flow_loss(model, x, cond=cond, generator=g, logit_normal=True, shift=shift)
        p = model.config.patch_size
        with torch.no_grad():
            targets = repa.token_targets(repa_encoder.features(x), x.shape[-2] // p, x.shape[-1] // p)
        return repa.flow_repa_loss(model, x, targets, repa_weight, cond=cond, generator=g, shift=shift)

    return loss_fn


def oracle_text_table(prompts: list[str], width: int = 64, length: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """A perfect text encoder for the caption grammar, as an upper bound: txt (N, length, width) holds a one-hot of
    each word at its token position ([BOS] at 0 left empty), y_vec (N, width) one-hots of the digit, colour and
    direction (all zero for "")."""
    words = caption_words()
    if len(words) > width or 10 + len(COLOUR_NAMES) + len(DIRECTION_NAMES) > width:
        raise ValueError(f"width {width} is too small for one-hots of {len(words)} words")
    txt, vec = torch.zeros(len(prompts), length, width), torch.zeros(len(prompts), width)
    for i, prompt in enumerate(prompts):
        for j, w in enumerate(prompt.split()):
            txt[i, j + 1, words.index(w)] = 1.0
        if prompt:
            _, colour, digit, _, direction = prompt.split()
            vec[i, int(digit)] = 1.0
            vec[i, 10 + COLOUR_NAMES.index(colour)] = 1.0
            vec[i, 10 + len(COLOUR_NAMES) + DIRECTION_NAMES.index(direction)] = 1.0
    return txt, vec




def t2v_mmdit(minutes: float | None = None, steps: int | None = None, progress: bool = True,
              checkpoint_path: str | None = None, n_videos: int | None = None, config: MMDiTConfig | None = None,
              train_config: TrainConfig | None = None, tasks: dict[str, float] | None = None,
              image_steps: int | None = None, image_train_config: TrainConfig | None = None,
              evaluate: bool = True, device: torch.device | str | None = None, preset: str = "default",
              repa_weight: float | None = None, shift: float | None = None,
              text_features: tuple[torch.Tensor, torch.Tensor] | None = None,
              callback=None, callback_every: int = 0, **overrides) -> RecipeRun:
    """Lesson 08's text-to-video MMDiT on moving digits (train combinations). The shipped video VAE and text encoder
    are frozen; their outputs are computed once. One stage ("main", `steps`, default the recipe's) in which each step
    practises one of `tasks` (default the recipe's: stills and image-to-video, see t2v_loss_fn), optionally after a
    stage of stills alone ("stills": `image_steps` steps, or `image_train_config`: the benchmarks' "staged" recipe).

    `minutes` caps the whole run's wall time (a safety cap: the recipe is defined by its steps). `config` /
    `train_config` / `repa_weight` / `shift` let the lesson and the benchmarks train variants; `text_features` =
    (txt, y_vec) tables of the 240 captions and "" replace the text encoder's (e.g. `oracle_text_table`).
    `callback(stage, step, ema)` runs every `callback_every` steps of each stage. `preset` "gpu" is T2V_MMDIT_GPU.
    The card holds the pipeline settings, each stage's steps per second and, if `evaluate` (rank 0 only), prompt
    adherence; the run's result counts the steps and minutes of every stage."""
    r = settings("t2v-mmdit", preset)
    base = train_config or r["train"]
    image_base = image_train_config or r["image_train"]
    if image_steps is not None:
        image_base = replace(image_base or base, steps=image_steps) if image_steps > 0 else None
    tasks = check_tasks(tasks or r["tasks"])
    seed_everything(base.seed)
    vae, _ = load_pretrained("video-vae")
    clip, _ = load_pretrained("text-encoder")
    n_videos = n_videos or r["n_videos"]
    latents, index, video_shape = cached_video_latents(vae, n_videos, r["data_seed"])
    txt, vec = _t2v_text(clip, text_features)
    weight = r["repa_weight"] if repa_weight is None else repa_weight
    mcfg = _t2v_model_config(config or r["mmdit"], txt, vec, tasks, weight)
    shift = r["shift"] if shift is None else shift
    encoder = clip.video_encoder.eval().requires_grad_(False) if weight else None
    if encoder is not None:
        encoder.to(distributed.context().device(device) or "cpu")
    model = MMDiT(mcfg)
    stages = ([("stills", image_base, {"t2i": 1.0})] if image_base is not None else []) + [("main", base, tasks)]
    pace = {}
    trained = 0.0  # minutes of training so far (a callback's time is not counted, as in `train`)
    for name, stage_base, stage_tasks in stages:
        loss = t2v_loss_fn(txt, vec, len(txt) - 1, r["text_dropout"], shift, r["text_dropout_joint"], encoder, weight,
                           stage_tasks)
        cfg = _stage_config(stage_base, minutes, trained, steps if name == "main" else None, device, **overrides)
        ckpt = None if checkpoint_path is None else checkpoint_path + ("" if name == "main" else f".{name}")
        cb = None if callback is None else (lambda step, ema, name=name: callback(name, step, ema))
        result = train(model, loss, (latents, index), cfg, device=device, checkpoint_path=ckpt, progress=progress,
                       callback=cb, callback_every=callback_every)
        model = result.model
        trained += result.minutes
        pace[name] = {"steps": result.step, "minutes": round(result.minutes, 2),
                      "steps_per_second": round(result.step / max(result.minutes * 60, 1e-9), 3),
                      "stopped_by": result.stopped_by, "tasks": stage_tasks, "train": cfg.to_dict()}
    result.minutes, result.step = trained, sum(v["steps"] for v in pace.values())
    pipeline = {"vae": "video-vae", "text_encoder": "text-encoder", "frames": video_shape[1],
                "height": video_shape[2], "width": video_shape[3], "shift": shift, **r["sampling"]}
    recipe = _t2v_recipe(r, pace, mcfg, shift, weight, n_videos, text_features is not None)
    fields = {"pipeline": pipeline, "stages": {k: {kk: vv for kk, vv in v.items() if kk not in ("train", "tasks")}
                                               for k, v in pace.items()}}
    run = run_of("t2v-mmdit", "mmdit", result, recipe, preset, **fields)
    if evaluate and distributed.is_main() and text_features is None:
        run.card["metrics"] = _t2v_adherence(run.model, vae, clip, pipeline)
    return run


def _t2v_text(clip: TinyCLIP, text_features: tuple[torch.Tensor, torch.Tensor] | None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """(txt, y_vec) of the 240 captions and "" (the null caption, last): the text encoder's, or the given ones."""
    prompts = caption_table() + [""]
    txt, vec = text_features if text_features is not None else text_table(clip, prompts)
    if txt.shape[0] != len(prompts) or vec.shape[0] != len(prompts):
        raise ValueError(f"text_features must hold (txt, y_vec) for the {len(prompts)} captions and \"\", got "
                         f"{tuple(txt.shape)} and {tuple(vec.shape)}")
    return txt, vec


def _t2v_model_config(config: MMDiTConfig, txt: torch.Tensor, vec: torch.Tensor, tasks: dict[str, float],
                      repa_weight: float) -> MMDiTConfig:
    """A copy of `config` with the text widths of `txt` and `vec`, checked against the tasks."""
    mcfg = MMDiTConfig.from_dict(config.to_dict())
    mcfg.context_in_dim, mcfg.vec_in_dim = txt.shape[-1], vec.shape[-1]
    if "i2v" in tasks and not mcfg.cond_embed:
        raise ValueError("the task 'i2v' needs an MMDiT with cond_embed=True (an image-conditioning input)")
    if not repa_weight:
        mcfg.repa_dim = 0  # no projector to train (DDP would find it unused)
    return mcfg


def _stage_config(base: TrainConfig, minutes: float | None, trained: float, steps: int | None,
                  device: torch.device | str | None, **overrides) -> TrainConfig:
    """A stage's TrainConfig: what is left of the run's `minutes` after `trained` (else the stage's own cap)."""
    left = None if minutes is None else max(minutes - trained, 1e-3)
    cfg = with_overrides(base, left, steps, device, **overrides)
    if minutes is None:
        cfg.max_minutes = base.max_minutes
    return cfg


def _t2v_recipe(r: dict, pace: dict, mcfg: MMDiTConfig, shift: float, weight: float, n_videos: int,
                given_text: bool) -> dict:
    """The card's recipe_config of a text-to-video run."""
    return {"objective": "rectified flow on scaled video-vae latent means, v = noise - x0, t = 1 is noise",
            "t": f"logit-normal, then time_shift(gamma={shift:g})",
            "tasks": {name: v["tasks"] for name, v in pace.items()},
            "task_meaning": "each step one task: t2i the first latent frame alone (a still), i2v the whole video "
                            "with its first latent frame given (cond_in), t2v the whole video with nothing given",
            "sampling": "text -> image -> video (the first latent frame, then the video with it given)"
                        if mcfg.cond_embed else "text -> video in one pass",
            "repa": (f"weight {weight:g}: the video tokens after double-stream block {mcfg.repa_depth}, "
                     "projected, aligned (1 - cosine) to the text encoder's video tower's features of the clean "
                     "latents" if weight else "none"),
            "text_dropout": r["text_dropout"], "text_dropout_joint": r["text_dropout_joint"],
            "text": "given text_features" if given_text else "the shipped text-encoder",
            "data": f"{n_videos} moving-digit videos (train split, seed {r['data_seed']}) encoded once; text "
                    "embeddings of the 240 captions and \"\" cached",
            "train": pace["main"]["train"], **({"image_train": pace["stills"]["train"]} if "stills" in pace else {})}


def _t2v_adherence(mmdit: MMDiT, vae: VideoVAE, clip: TinyCLIP, pipeline: dict) -> dict:
    """Prompt adherence of the trained model on both splits (every caption once, seed 1), on the CPU."""
    from ..eval import prompt_adherence
    from ..pipeline import TextToVideo

    judge, _ = load_pretrained("digit-classifier")
    sampling = {k: v for k, v in pipeline.items() if k not in ("vae", "text_encoder")}
    pipe = TextToVideo(mmdit, vae, clip.text_encoder.eval(), **sampling)
    metrics = {split: prompt_adherence(pipe, judge, split, seed=1) for split in ("train", "heldout")}
    metrics["source"] = (f"recipes.t2v_mmdit: every caption of the split once (seed 1), {pipeline['steps']} Euler "
                         f"steps, guidance {pipeline['cfg_scale']}")
    return metrics
