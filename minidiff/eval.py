r"""Judging generated digits: a small digit classifier, class-conditional accuracy, and a Fréchet distance.

Fréchet distance between two sets of features with means mu_1, mu_2 and covariances S_1, S_2 (as in FID):
    d^2 = ||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^{1/2})
computed in the classifier's penultimate (128-d) features.
`frechet` = distance between N generated digits and the held-out real reference digits (never used to train a
generator, nor the judge); `frechet_floor` = the distance between N *real* training-split digits with the same class
counts and that same reference: what a perfect generator (or one that memorised its training set) scores, averaged
over 20 random draws, with its spread. The distance depends on N (roughly 22 + 8,200 / N for these digits and the
shipped judge, from 104 at N = 100 to 34 at N = 700: the covariance of a small set is noisy), so compare two numbers
only at equal N, and only beyond their spreads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .models.classifier import ClassifierConfig, DigitClassifier


def augment(x: torch.Tensor, generator: torch.Generator, max_shift: int = 1) -> torch.Tensor:
    """Random integer shifts of up to `max_shift` pixels (background -1 filled in)."""
    b = x.shape[0]
    out = torch.full_like(x, -1.0)
    p = max_shift
    padded = F.pad(x, (p, p, p, p), value=-1.0)
    sx = torch.randint(0, 2 * p + 1, (b,), generator=generator)
    sy = torch.randint(0, 2 * p + 1, (b,), generator=generator)
    h, w = x.shape[-2:]
    for i in range(b):
        out[i] = padded[i, :, sy[i]:sy[i] + h, sx[i]:sx[i] + w]
    return out


def train_classifier(x: torch.Tensor, y: torch.Tensor, steps: int = 1500, batch_size: int = 128, lr: float = 2e-3,
                     seed: int = 0, augment_shift: int = 1, progress: bool = True) -> DigitClassifier:
    """Train a DigitClassifier with Adam and cross-entropy on (x, y), with shift augmentation."""
    from tqdm.auto import tqdm

    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = DigitClassifier(ClassifierConfig(image_size=x.shape[-1]))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in tqdm(range(steps), desc="classifier", disable=not progress):
        idx = torch.randint(0, x.shape[0], (batch_size,), generator=g)
        xb = augment(x[idx], g, augment_shift) if augment_shift else x[idx]
        loss = F.cross_entropy(model(xb), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


@torch.no_grad()
def predict(classifier: DigitClassifier, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    return torch.cat([classifier(x[i:i + batch_size].float().cpu()).argmax(1) for i in range(0, len(x), batch_size)])


@torch.no_grad()
def features(classifier: DigitClassifier, x: torch.Tensor, batch_size: int = 512) -> np.ndarray:
    return torch.cat([classifier.features(x[i:i + batch_size].float().cpu()) for i in range(0, len(x), batch_size)]
                     ).double().numpy()


def class_accuracy(classifier: DigitClassifier, x: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of images the classifier assigns to the class they were generated (or labelled) as."""
    _check_pairs(x, labels, "images", "labels")
    return float((predict(classifier, x) == labels.cpu()).float().mean())


def _check_pairs(x: torch.Tensor, labels: torch.Tensor, what: str, of: str) -> None:
    if not isinstance(labels, torch.Tensor) or labels.ndim != 1 or labels.dtype.is_floating_point:
        raise ValueError(f"{of} must be a 1-D integer tensor, got {type(labels).__name__} "
                         f"{tuple(labels.shape) if isinstance(labels, torch.Tensor) else ''}")
    if len(x) != len(labels):
        raise ValueError(f"{len(x)} {what} but {len(labels)} {of}: give one per {what[:-1]}")


def frechet_distance(f1: np.ndarray, f2: np.ndarray) -> float:
    """||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^{1/2}) between two feature sets (N_i, D)."""
    for name, f in (("f1", f1), ("f2", f2)):
        if not isinstance(f, np.ndarray) or f.ndim != 2 or f.shape[0] < 2:
            raise ValueError(f"{name} must be a feature array (N, D) with N >= 2 (a covariance needs two samples), "
                             f"got {getattr(f, 'shape', type(f).__name__)}")
        if not np.isfinite(f).all():
            raise ValueError(f"{name} contains NaN or infinite features")
    if f1.shape[1] != f2.shape[1]:
        raise ValueError(f"f1 and f2 must have the same feature size, got {f1.shape[1]} and {f2.shape[1]}")
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    # Tr((S1 S2)^(1/2)) = Tr((A S2 A)^(1/2)) with A = S1^(1/2): a symmetric PSD matrix, stable even if S1 is singular
    w, v = np.linalg.eigh(s1)
    a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh(a @ s2 @ a), 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)


def frechet_floor(classifier: DigitClassifier, labels: torch.Tensor, draws: int = 20, seed: int = 0,
                  f_ref: np.ndarray | None = None) -> list[float]:
    """The real-vs-real floor for a sample set with these `labels`: `draws` times, pick real train-split digits with
    exactly the class counts of `labels` (without replacement) and measure their Fréchet distance to the reference
    split. Returns the `draws` distances (their mean is the floor, their spread its noise at this N)."""
    from .data import load_digits

    if not isinstance(labels, torch.Tensor) or labels.ndim != 1 or labels.dtype.is_floating_point:
        raise ValueError(f"labels must be a 1-D integer tensor of digits, got {type(labels).__name__} "
                         f"{tuple(getattr(labels, 'shape', ()))}")
    if len(labels) == 0 or int(labels.min()) < 0 or int(labels.max()) > 9:
        raise ValueError("labels must be digits 0-9 (and at least one)")
    if draws < 2:
        raise ValueError(f"draws must be at least 2 (the floor's spread needs two), got {draws}")
    real, y_real = load_digits(16, split="train")
    counts = torch.bincount(labels.cpu(), minlength=10)
    avail = torch.bincount(y_real, minlength=10)
    if (counts > avail).any():
        k = int((counts > avail).nonzero()[0])
        raise ValueError(f"the floor needs {int(counts[k])} real train-split digits of class {k}, only "
                         f"{int(avail[k])} exist: use at most {int(avail.min())} samples per class")
    if f_ref is None:
        f_ref = features(classifier, load_digits(16, split="reference")[0])
    f_real = features(classifier, real)
    pools = [(y_real == k).nonzero().squeeze(1) for k in range(10)]
    out = []
    for d in range(draws):
        g = torch.Generator().manual_seed(seed + d)
        pick = torch.cat([pool[torch.randperm(len(pool), generator=g)[:int(c)]]
                          for pool, c in zip(pools, counts, strict=True)])
        out.append(frechet_distance(f_real[pick.numpy()], f_ref))
    return out


def with_spread(record: dict, key: str, digits: int = 3) -> str:
    """A benchmark record's `key` as "mean ± std" over its sampling runs, or "mean (1 run)" when the record has no
    spread of its own (`key + "_std"` is None): the way lessons 03-05 print image_quality.json."""
    if key not in record:
        raise KeyError(f"the record has no {key!r}; it has {sorted(record)}")
    sd = record.get(key + "_std")
    return f"{record[key]:.{digits}f} ± {sd:.{digits}f}" if sd is not None else f"{record[key]:.{digits}f} (1 run)"


def evaluate_digits(classifier: DigitClassifier, samples: torch.Tensor, labels: torch.Tensor,
                    floor_draws: int = 20) -> dict:
    """class_accuracy, frechet (samples vs the held-out reference digits) and the floor at the same N and class
    counts (`frechet_floor`: mean over `floor_draws` draws of real train-split digits, `frechet_floor_std`: their
    standard deviation). The judge must not have been trained on the reference split (the shipped one is not).
    """
    from .data import load_digits

    if samples.shape[0] != labels.shape[0]:
        raise ValueError(f"{samples.shape[0]} samples but {labels.shape[0]} labels")
    ref, _ = load_digits(16, split="reference")
    f_ref = features(classifier, ref)
    floors = frechet_floor(classifier, labels, floor_draws, f_ref=f_ref)
    return {
        "class_accuracy": round(class_accuracy(classifier, samples.clamp(-1, 1), labels), 4),
        "frechet": round(frechet_distance(features(classifier, samples.clamp(-1, 1)), f_ref), 3),
        "frechet_floor": round(float(np.mean(floors)), 3),
        "frechet_floor_std": round(float(np.std(floors, ddof=1)), 3) if len(floors) > 1 else 0.0,
        "floor_draws": len(floors),
        "n_samples": samples.shape[0],
        "n_reference": len(ref),
    }


# --------------------------------------------------------------------------------------------------- video judge


CONFIDENT = 0.9  # the judge's probability above which a glyph counts as clearly drawn


@dataclass
class VideoJudgement:
    """Predicted attributes of each video (indices as in minidiff.data; -1 = none: no bright ink, or no motion of at
    least 2 pixels) and, if targets were given, accuracies."""

    digits: torch.Tensor
    colours: torch.Tensor
    directions: torch.Tensor
    accuracy: dict[str, float] | None = None
    # the judge's probability of the digit it reads (geometric mean over the frames; 0 where there is no ink)
    digit_confidence: torch.Tensor | None = None

    @property
    def confident(self) -> torch.Tensor:
        """Videos whose glyph the judge reads with probability >= 0.9, whatever digit it reads: "draws a clear digit"
        as opposed to "draws mush"."""
        return self.digit_confidence >= CONFIDENT


def _centre_of_mass(ink: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column of each frame's ink centre of mass: (N, T, H, W) -> two (N, T) tensors."""
    h, w = ink.shape[-2:]
    mass = ink.sum((-1, -2)).clamp_min(1e-6)
    return (ink.sum(-1) * torch.arange(h)).sum(-1) / mass, (ink.sum(-2) * torch.arange(w)).sum(-1) / mass


def _glyph_crops(ink: torch.Tensor, glyph_size: int, out_size: int = 16) -> torch.Tensor:
    """Crop a glyph_size square around each frame's ink centre of mass; (N, T, H, W) -> (N*T, 1, out, out)."""
    n, t, h, w = ink.shape
    cy, cx = _centre_of_mass(ink)
    top = (cy - (glyph_size - 1) / 2).round().long().clamp(0, h - glyph_size)
    left = (cx - (glyph_size - 1) / 2).round().long().clamp(0, w - glyph_size)
    ar = torch.arange(glyph_size)
    rows = top[..., None, None] + ar[:, None]
    cols = left[..., None, None] + ar[None, :]
    crops = ink[torch.arange(n)[:, None, None, None], torch.arange(t)[None, :, None, None], rows, cols]
    crops = F.interpolate(crops.reshape(n * t, 1, glyph_size, glyph_size), size=(out_size, out_size),
                          mode="bilinear", align_corners=False)
    return crops * 2 - 1


def judge_videos(videos: torch.Tensor, classifier: DigitClassifier, digits: torch.Tensor | None = None,
                 colours: torch.Tensor | None = None, directions: torch.Tensor | None = None,
                 glyph_size: int = 12, palette: dict[str, tuple[float, float, float]] | None = None
                 ) -> VideoJudgement:
    """Read digit, colour and direction off moving-digit videos (N, 3, T, H, W) in [-1, 1].

    colour: the mean RGB of the bright pixels (ink > 0.5), nearest tint in `palette` (default data.COLOURS; colour
    indices are positions in it) after scaling by its max;
    direction: the track of the ink's centre of mass, first frame to last, along its larger axis;
    digit: the digit classifier on a glyph-sized crop around the centre of mass in every frame, logits averaged.
    With targets given, `accuracy` holds each attribute's accuracy and "all_three" (all correct at once).
    """
    from .data import COLOURS, DIRECTIONS

    if videos.ndim != 5 or videos.shape[1] != 3:
        raise ValueError(f"expected videos (N, 3, T, H, W), got shape {tuple(videos.shape)}")
    v = ((videos.detach().float().cpu() + 1) / 2).clamp(0, 1)
    ink = v.max(dim=1).values  # (N, T, H, W): the glyph's ink whatever its tint
    n, t, h, w = ink.shape

    bright = (ink > 0.5).float()
    rgb = (v * bright[:, None]).sum((2, 3, 4)) / bright.sum((1, 2, 3)).clamp_min(1)[:, None]
    rgb = rgb / rgb.max(dim=1, keepdim=True).values.clamp_min(1e-6)
    palette = torch.tensor(list((COLOURS if palette is None else palette).values()), dtype=torch.float32)
    if palette.ndim != 2 or palette.shape[1] != 3 or not len(palette):
        raise ValueError("palette must map colour names to (r, g, b) triples, e.g. {**data.COLOURS, 'orange': (1.0, "
                         f"0.55, 0.15)}}; got values of shape {tuple(palette.shape)}")
    has_ink = bright.sum((1, 2, 3)) > 0
    colour_pred = torch.where(has_ink, torch.cdist(rgb, palette).argmin(1), -1)

    cy, cx = _centre_of_mass(ink)
    dy, dx = cy[:, -1] - cy[:, 0], cx[:, -1] - cx[:, 0]
    move = torch.stack([torch.where(dy.abs() > dx.abs(), dy.sign(), torch.zeros_like(dy)),
                        torch.where(dy.abs() > dx.abs(), torch.zeros_like(dx), dx.sign())], 1).long()
    dirs = torch.tensor(list(DIRECTIONS.values()))
    match = (move[:, None] == dirs[None]).all(-1)
    still = torch.maximum(dy.abs(), dx.abs()) < 2.0  # moved less than 2 pixels: no direction at all
    direction_pred = torch.where(match.any(1) & ~still, match.float().argmax(1), -1)

    crops = _glyph_crops(ink, glyph_size)
    classifier = classifier.eval()
    with torch.no_grad():
        logits = torch.cat([classifier(c) for c in crops.split(2048)]).reshape(n, t, -1)
    mean_logp = logits.log_softmax(-1).mean(1)
    digit_pred = torch.where(has_ink, mean_logp.argmax(-1), -1)
    confidence = torch.where(has_ink, mean_logp.max(-1).values.exp(), torch.zeros(n))

    result = VideoJudgement(digit_pred, colour_pred, direction_pred, digit_confidence=confidence)
    if digits is not None and colours is not None and directions is not None:
        ok = {"digit": digit_pred == digits.cpu(), "colour": colour_pred == colours.cpu(),
              "direction": direction_pred == directions.cpu()}
        ok["all_three"] = ok["digit"] & ok["colour"] & ok["direction"]
        result.accuracy = {k: round(float(x.float().mean()), 4) for k, x in ok.items()}
    return result


def track_distance(videos: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per video, the mean distance in pixels between the ink's centre of mass in `videos` and in `reference` (both
    (N, 3, T, H, W) in [-1, 1]), frame by frame: 0 when the glyph is where the reference's is, whatever it looks
    like (how an edit kept the place and motion of what it changed)."""
    if videos.shape != reference.shape or videos.ndim != 5:
        raise ValueError(f"expected two video batches (N, 3, T, H, W) of one shape, got {tuple(videos.shape)} and "
                         f"{tuple(reference.shape)}")
    a = _centre_of_mass(((videos.detach().float().cpu() + 1) / 2).clamp(0, 1).amax(1))
    b = _centre_of_mass(((reference.detach().float().cpu() + 1) / 2).clamp(0, 1).amax(1))
    return ((a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2).sqrt().mean(1)


def psnr(x: torch.Tensor, ref: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of x against ref, both in [-1, 1]: 10 log10(1 / MSE) on the [0, 1] scale."""
    if x.shape != ref.shape:
        raise ValueError(f"psnr needs two tensors of the same shape, got {tuple(x.shape)} and {tuple(ref.shape)}")
    mse = float((((x.detach().float().cpu().clamp(-1, 1) - ref.detach().float().cpu()) / 2) ** 2).mean())
    return float("inf") if mse == 0 else 10.0 * float(np.log10(1.0 / mse))


def retrieval_top1(clip, latents: torch.Tensor, caption_index: torch.Tensor) -> float:
    """Fraction of videos (as scaled latents) whose most similar caption, among all 240, is their own, according to
    a tiny CLIP (`minidiff.models.text.TinyCLIP`)."""
    from .data import caption_table

    _check_pairs(latents, caption_index, "videos", "caption indices")
    with torch.no_grad():
        sims = clip.embed_video(latents) @ clip.embed_text(caption_table()).T
    return float((sims.argmax(1) == caption_index.cpu()).float().mean())


def split_captions(split: str) -> torch.Tensor:
    """Caption indices (into data.caption_table) of the training ("train", 230) or held-out ("heldout", 10)
    attribute combinations."""
    from .data import HELDOUT_COMBOS, VIDEO_SPLITS, caption_attributes

    if split not in VIDEO_SPLITS:
        raise ValueError(f"split must be one of {VIDEO_SPLITS}, got {split!r}")
    idx = torch.arange(240)
    d, c, m = (a.tolist() for a in caption_attributes(idx))
    held = torch.tensor([combo in HELDOUT_COMBOS for combo in zip(d, c, m, strict=True)])
    return idx[held] if split == "heldout" else idx[~held]


def digit_confusion(asked: torch.Tensor, read: torch.Tensor) -> torch.Tensor:
    """The 10 x 10 digit confusion counts: row = the digit asked for, column = the digit the judge read (-1, no ink,
    counts in no column)."""
    seen = read >= 0
    confusion = torch.zeros(10, 10, dtype=torch.long)
    confusion.index_put_((asked[seen], read[seen]), torch.ones(int(seen.sum()), dtype=torch.long), accumulate=True)
    return confusion


def prompt_adherence(generate, judge: DigitClassifier, split: str, samples_per_prompt: int = 1,
                     steps: int | None = None, cfg_scale: float | None = None, seed: int = 0, batch: int = 60) -> dict:
    """Prompt adherence of a text-to-video generator over every caption of a split, read by the video judge.

    generate(prompts, steps=, cfg_scale=, seed=) -> videos (e.g. a pipeline.TextToVideo); each batch gets its own
    seed (seed, seed + 1, ...). Returns the judge's accuracy per attribute and "all_three", the number of videos,
    "std_error" (binomial, of all_three), the digit accuracy per digit asked for ("digit_by_class"), the share of
    videos whose glyph the judge reads with probability >= 0.9 whatever the digit ("confident"), the 10 x 10 digit
    confusion counts (rows: the digit asked for, columns: the digit read; a video without ink counts in no column)
    and the seconds per video (generation only)."""
    import math
    import time

    from .data import caption_attributes, caption_table

    idx = split_captions(split).repeat(samples_per_prompt)
    table = caption_table()
    videos, seconds = [], 0.0
    for k, chunk in enumerate(idx.split(batch)):
        t0 = time.perf_counter()
        videos.append(generate([table[i] for i in chunk.tolist()], steps=steps, cfg_scale=cfg_scale, seed=seed + k))
        seconds += time.perf_counter() - t0
    d, c, m = caption_attributes(idx)
    judged = judge_videos(torch.cat(videos), judge, d, c, m)
    acc, p = judged.accuracy, judged.accuracy["all_three"]
    by_class = {str(k): round(float((judged.digits[d == k] == k).float().mean()), 3) for k in range(10)
                if (d == k).any()}
    return {**acc, "n_videos": len(idx), "std_error": round(math.sqrt(max(p * (1 - p), 1e-12) / len(idx)), 4),
            "confident": round(float(judged.confident.float().mean()), 4),
            "seconds_per_video": round(seconds / len(idx), 4), "digit_by_class": by_class,
            "confusion": digit_confusion(d, judged.digits).tolist()}


# ------------------------------------------------------------------------------------------- what the text carries

# where each attribute's word sits in the tokenized caption "[BOS] a <colour> <digit> moving <direction> [EOS]"
WORD_POSITIONS = {"colour": 2, "digit": 3, "direction": 5}


def _caption_features(txt: torch.Tensor, y_vec: torch.Tensor) -> dict:
    from .data import caption_attributes

    if txt.ndim != 3 or y_vec.ndim != 2 or len(txt) != 240 or len(y_vec) != 240:
        raise ValueError(f"expected txt (240, L, D) and y_vec (240, D) of the 240 captions in caption_table() order, "
                         f"got {tuple(txt.shape)} and {tuple(y_vec.shape)}")
    d, c, m = caption_attributes(torch.arange(240))
    return {"digit": d, "colour": c, "direction": m}


def variance_share(x: torch.Tensor, labels: torch.Tensor) -> float:
    """The share of the variance of features x (N, D) that a labelling explains: between-class sum of squares over
    the total sum of squares (1 = the features are a function of the label, 0 = they ignore it)."""
    x = x.detach().double().flatten(1)
    x = x - x.mean(0)
    total = float(x.pow(2).sum())
    between = sum(float((labels == k).sum()) * float(x[labels == k].mean(0).pow(2).sum()) for k in labels.unique())
    return between / max(total, 1e-30)


def text_probe(txt: torch.Tensor, y_vec: torch.Tensor) -> dict:
    """How well each caption attribute can be read from the text encoder's outputs for the 240 captions:

    - "variance_share": `variance_share` of the attribute, for txt at the attribute word's position and for y_vec;
    - "probe": a linear probe (logistic regression) trained on all contexts but one and tested on that one (leave one
      colour out for the digit, one digit out for colour and direction), from txt at the word's position and from
      y_vec. A held-out *context* matters: at the digit's position a causal encoder has seen only "a <colour>
      <digit>", so testing on captions whose prefix was in the training folds would only test memory.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import LeaveOneGroupOut, cross_val_score

    attrs = _caption_features(txt, y_vec)
    groups = {"digit": attrs["colour"], "colour": attrs["digit"], "direction": attrs["digit"]}
    out: dict = {"variance_share": {}, "probe": {}}
    for name, lab in attrs.items():
        feats = {"txt": txt[:, WORD_POSITIONS[name]], "y_vec": y_vec}
        out["variance_share"][name] = {k: round(variance_share(f, lab), 3) for k, f in feats.items()}
        out["probe"][name] = {
            k: round(float(cross_val_score(LogisticRegression(max_iter=5000), f.detach().double().numpy(), lab.numpy(),
                                           groups=groups[name].numpy(), cv=LeaveOneGroupOut()).mean()), 3)
            for k, f in feats.items()}
    return out


@torch.no_grad()
def swapped_captions(pipe, judge: DigitClassifier, n_noises: int = 24, seed: int = 123) -> dict:
    """The swapped-caption check. For each of `n_noises` noises (a colour and a direction drawn per noise), sample the
    ten captions that differ only in the digit from that *same* noise, and let the judge read the digits. A model
    that reads the digit word draws the ten digits asked for; one that ignores it draws one glyph whatever the
    caption (1 distinct digit per noise). Returns the digit accuracy with its binomial standard error, the mean
    number of distinct digits read per noise, and the 10x10 confusion (rows: asked for, columns: read; a video
    without ink counts in no column)."""
    from .data import COLOUR_NAMES, DIRECTION_NAMES, caption

    if n_noises < 1:
        raise ValueError(f"n_noises must be at least 1, got {n_noises}")
    g = torch.Generator().manual_seed(seed)
    asked, reads, distinct = [], [], []
    for k in range(n_noises):
        c = int(torch.randint(len(COLOUR_NAMES), (1,), generator=g))
        m = int(torch.randint(len(DIRECTION_NAMES), (1,), generator=g))
        one = torch.randn(pipe.latent_shape(1), generator=torch.Generator().manual_seed(seed + k))
        latents = pipe.sample_latents([caption(d, c, m) for d in range(10)],
                                      noise=one.expand(pipe.latent_shape(10)).contiguous().to(pipe.device))
        read = judge_videos(pipe.decode(latents), judge).digits
        asked.append(torch.arange(10))
        reads.append(read)
        distinct.append(len(set(read.tolist())))
    asked, reads = torch.cat(asked), torch.cat(reads)
    n = 10 * n_noises
    acc = int((reads == asked).sum()) / n
    return {"digit": round(acc, 4), "std_error": round(math.sqrt(acc * (1 - acc) / n), 4),
            "distinct_digits_per_noise": round(sum(distinct) / n_noises, 2), "n_noises": n_noises, "n_videos": n,
            "confusion": digit_confusion(asked, reads).tolist(), "steps": pipe.steps, "cfg_scale": pipe.cfg_scale}

