"""Text to video, the whole pipeline (lesson 08), as Open-Sora's inference runs it:

    prompt --text encoder--> txt (B, L, D), y_vec (B, D)          frozen (the tiny CLIP's text tower, lesson 07)
    noise x_1 ~ N(0, I), (B, C, T_lat, h, w)                         the VAE's latent shape for the video size
    Euler from t = 1 to 0 on the shifted grid, each step          flow.euler_sample
        v = ClassifierFreeGuidance(MMDiT)(x, t, txt=..., y_vec=...)  batched [prompt; ""]
    video = VAE.decode(x_0 / scaling_factor)                       (B, 3, T, H, W) in [-1, 1]

Everything a sample depends on is an argument (prompts, steps, guidance scale, seed), so a seed gives the same video
on every run on the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .checks import check_int, short
from .flow import euler_sample
from .guidance import ClassifierFreeGuidance
from .models.mmdit import MMDiT, i2v_condition
from .models.text import TextEncoder
from .models.vae import VideoVAE


@dataclass
class TextToVideo:
    """The three frozen parts and the sampling defaults. `from_pretrained()` loads the shipped ones."""

    mmdit: MMDiT
    vae: VideoVAE
    text_encoder: TextEncoder
    frames: int = 9
    height: int = 32
    width: int = 32
    shift: float = 1.0  # the time shift gamma of training, reused for the sampling grid (Open-Sora does the same)
    steps: int = 20
    cfg_scale: float = 3.0

    @classmethod
    def from_pretrained(cls, name: str = "t2v-mmdit", device: torch.device | str | None = None) -> TextToVideo:
        """The shipped MMDiT `name` with the VAE and text encoder its card names, on `device` (default: the best)."""
        from .pretrained import load_pretrained
        from .utils import device as best_device

        dev = torch.device(device) if device is not None else best_device()
        mmdit, card = load_pretrained(name, device=dev)
        parts = card.get("pipeline", {})
        vae, _ = load_pretrained(parts.get("vae", "video-vae"), device=dev)
        clip, _ = load_pretrained(parts.get("text_encoder", "text-encoder"), device=dev)
        return cls(mmdit, vae, clip.text_encoder.eval(), frames=parts.get("frames", 9),
                   height=parts.get("height", 32), width=parts.get("width", 32), shift=parts.get("shift", 1.0),
                   steps=parts.get("steps", 20), cfg_scale=parts.get("cfg_scale", 3.0))

    @property
    def device(self) -> torch.device:
        return next(self.mmdit.parameters()).device

    @property
    def vocabulary(self) -> list[str]:
        return sorted(self.text_encoder.config.words)

    def check_prompts(self, prompts: list[str] | str) -> list[str]:
        """A list of non-empty prompts made of known words; a ValueError that says what is wrong otherwise."""
        if isinstance(prompts, str):
            prompts = [prompts]
        if isinstance(prompts, tuple):
            prompts = list(prompts)
        if not isinstance(prompts, list) or not prompts:
            raise ValueError(f"prompts must be a caption or a non-empty list of captions, e.g. 'a red 3 moving "
                             f"left'; got {short(prompts)}")
        for p in prompts:
            if not isinstance(p, str):
                raise ValueError(f"each prompt must be a string, got {type(p).__name__} {short(p)}")
            if not p.strip():
                raise ValueError(f"empty prompt {short(p, 40)}: describe a video with the known words, e.g. 'a red 3 "
                                 f"moving left' (known words: {' '.join(self.vocabulary)})")
        from .models.text import tokenize

        tokenize(self.text_encoder.tokenizer, list(prompts))  # unknown words / too long: its ValueError says which
        return list(prompts)

    @torch.no_grad()
    def encode_prompts(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(txt (B, L, D), y_vec (B, D)) of the text encoder, on the model's device. "" is the null text."""
        txt, y_vec = self.text_encoder(list(prompts))
        return txt.to(self.device), y_vec.to(self.device)

    def latent_shape(self, batch: int) -> tuple[int, ...]:
        """(B, C, T_lat, h, w) for this pipeline's video size; a clear error if the VAE cannot take that size."""
        c, t, h, w = self.vae.latent_shape(self.frames, self.height, self.width)
        p = self.mmdit.config.patch_size
        if h % p or w % p:
            raise ValueError(f"the latent size {h}x{w} is not divisible by the MMDiT's patch size {p}: choose a "
                             f"video size whose latents divide by {p}")
        if c != self.mmdit.config.latent_channels:
            raise ValueError(f"the VAE gives {c} latent channels but the MMDiT expects "
                             f"{self.mmdit.config.latent_channels}")
        return batch, c, t, h, w

    @property
    def route(self) -> str:
        """"t2i2v" for an MMDiT trained for image-to-video too (config.cond_embed): text -> first frame -> video;
        "t2v" for one that makes the whole video in one pass."""
        return "t2i2v" if self.mmdit.config.cond_embed else "t2v"

    def guided_model(self, cfg_scale: float) -> ClassifierFreeGuidance:
        """The MMDiT wrapped in classifier-free guidance against the empty caption (txt and y_vec of ""); a given
        first frame (`cond`) goes to both passes, so the guidance is on the text alone."""
        null_txt, null_vec = self.encode_prompts([""])
        return ClassifierFreeGuidance(self.mmdit, cfg_scale, null={"txt": null_txt[0], "y_vec": null_vec[0]},
                                      keep=("cond",))

    @torch.no_grad()
    def sample_latents(self, prompts: list[str] | str, steps: int | None = None, cfg_scale: float | None = None,
                       seed: int = 0, noise: torch.Tensor | None = None, trajectory: bool | int = False,
                       progress: bool = False, first_frame: torch.Tensor | None = None):
        """Scaled latents x_0 (B, C, T_lat, h, w) for the prompts (and the trajectory if asked).

        Route "t2v": one Euler pass over the whole latent video. Route "t2i2v" (Open-Sora v2's text -> image ->
        video): the first latent frame alone, as an image (the causal VAE encodes frame 0 by itself, so it is one),
        then the whole video with that frame given (`i2v_condition`), which is kept exactly. `first_frame`
        (B, C, 1, h, w), scaled, skips the image pass: image-to-video. `noise` (the full shape) is the starting
        noise of the video pass; its first frame starts the image pass (so a pipeline with frames=1 and the same
        seed gives exactly the video's first latent frame). The trajectory is the video pass's."""
        prompts = self.check_prompts(prompts)
        steps = self.steps if steps is None else check_int("steps", steps, low=1)
        seed = check_int("seed", seed)
        shape = self.latent_shape(len(prompts))
        generator = torch.Generator().manual_seed(seed)
        if noise is None:  # drawn frame by frame, so a frame's noise does not depend on how many follow it
            noise = torch.randn((shape[2], shape[0], shape[1], *shape[3:]), generator=generator)
            noise = noise.permute(1, 2, 0, 3, 4).contiguous()
        txt, y_vec = self.encode_prompts(prompts)
        model = self.guided_model(self.cfg_scale if cfg_scale is None else cfg_scale)
        cond = {"txt": txt, "y_vec": y_vec}
        sample = dict(steps=steps, generator=generator, device=self.device, progress=progress, shift=self.shift)
        if self.route == "t2v" or (shape[2] == 1 and first_frame is None):  # one pass (an image is one frame)
            if first_frame is not None:
                raise ValueError("this MMDiT was not trained for image-to-video (config.cond_embed is False): it "
                                 "cannot start from a given first frame")
            return euler_sample(model, shape, cond=cond, noise=noise, trajectory=trajectory, **sample)
        if first_frame is None:
            first_frame = euler_sample(model, (*shape[:2], 1, *shape[3:]), cond=cond, noise=noise[:, :, :1],
                                       **sample)
        elif tuple(first_frame.shape) != (*shape[:2], 1, *shape[3:]):
            raise ValueError(f"first_frame must be one scaled latent frame per prompt, shape "
                             f"{(*shape[:2], 1, *shape[3:])}, got {tuple(first_frame.shape)}")
        first_frame = first_frame.to(self.device)
        cond["cond"] = i2v_condition(first_frame, shape[2])
        out = euler_sample(model, shape, cond=cond, noise=noise, trajectory=trajectory, **sample)
        x = out[0] if trajectory else out
        x[:, :, :1] = first_frame  # the given frame, exactly
        return out

    @torch.no_grad()
    def invert(self, latents: torch.Tensor, prompts: list[str] | str, steps: int | None = None,
               cfg_scale: float = 1.0) -> torch.Tensor:
        """The starting noise from which `sample_latents(prompts, noise=...)` returns (about) these scaled latents:
        the sampler's passes run backwards (`editing.invert`) under the prompts, guided with `cfg_scale` (1: the
        conditional prediction alone, the usual choice; guidance makes inversion drift). Route "t2i2v": the video
        pass is inverted with the latents' own first frame given, and the noise's first frame is the image pass's
        inversion of that frame (the frame both passes start from when sampling)."""
        from .editing import invert

        prompts = self.check_prompts(prompts)
        steps = self.steps if steps is None else check_int("steps", steps, low=1)
        shape = self.latent_shape(len(prompts))
        if not isinstance(latents, torch.Tensor) or tuple(latents.shape) != shape:
            raise ValueError(f"latents must be this pipeline's scaled latents, shape {shape} for {len(prompts)} "
                             f"prompt(s), got {tuple(getattr(latents, 'shape', ()))}")
        latents = latents.to(self.device)
        txt, y_vec = self.encode_prompts(prompts)
        model, cond = self.guided_model(cfg_scale), {"txt": txt, "y_vec": y_vec}
        if self.route == "t2v" or shape[2] == 1:
            return invert(model, latents, steps=steps, cond=cond, shift=self.shift)
        first = invert(model, latents[:, :, :1], steps=steps, cond=cond, shift=self.shift)
        noise = invert(model, latents, steps=steps, shift=self.shift,
                       cond={**cond, "cond": i2v_condition(latents[:, :, :1], shape[2])})
        noise[:, :, :1] = first
        return noise

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> videos (B, 3, T, H, W) in [-1, 1], on the CPU."""
        return self.vae.decode(latents.to(self.device) / self.vae.config.scaling_factor).clamp(-1, 1).cpu()

    def __call__(self, prompts: list[str] | str, steps: int | None = None, cfg_scale: float | None = None,
                 seed: int = 0, progress: bool = False) -> torch.Tensor:
        """Videos (B, 3, frames, height, width) in [-1, 1] for the prompts."""
        return self.decode(self.sample_latents(prompts, steps, cfg_scale, seed, progress=progress))
