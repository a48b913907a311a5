"""minidiff: from forward noising to a text-to-video MMDiT, small enough for a laptop CPU.

Modules, one concept each. Imports run one way, down these rows; the two halves of row 2 don't import each other.
  1. base
     checks            the input checks every public entry makes once (clear errors, not torch's tracebacks)
     utils             the device, seeding, fast (test) mode
     config            the dataclass base of every model config (to and from JSON)
     sampling          the one sampler signature: cond dicts, starting noise, trajectories
     schedules         beta schedules and everything derived from them (alphas_cumprod, SNR, posterior coefficients)
     checkpoint        atomic safetensors and JSON writes, safe loading
     distributed       several processes under torchrun: the process group, collectives, clear errors when one dies
     models/layers     shared Transformer pieces (Flux's layout): timestep_embedding, MLPEmbedder, LabelEmbedder,
                       modulate, Modulation, QKNorm, EmbedND (RoPE), attention, mlp, LastLayer, patchify(_video)
  2. processes         ddpm (q_sample, posterior, L_simple, ancestral sampler), ddim (sampler, inversion, slerp),
                       flow (interpolation, velocity loss, time shift, Euler sampler, the unified view),
                       guidance (classifier-free guidance), editing (SDEdit, inpainting),
                       distill (progressive distillation: fewer steps)
     models            models/unet, models/dit, models/mmdit, models/vae, models/text (tokenizer, text encoder,
                       tiny CLIP), models/mlp (2-D velocity field), models/classifier (the digit judge);
                       lora (low-rank adapters to fine-tune any of them)
  3. data              digits, a photo, 2-D toys, moving-digits videos with captions
     latents           moving-digit videos encoded once by a video VAE, cached in data/cache/
     eval              classifier training, accuracy, Fréchet distance, the video judge, PSNR, caption retrieval
     viz               plots, animations, the live loss curve
     train             the one training loop (AdamW, EMA, clipping, time budget, atomic checkpoints, resume, DDP)
     pretrained        shipped checkpoints: data/pretrained/NAME.safetensors + NAME.json, installing a new one
     pipeline          text -> image -> video in one call (TextToVideo), and its inversion
     long_video        longer videos: a storyboard of image-to-video segments
  4. recipes/          the exact settings and runs that produce every shipped checkpoint (python -m minidiff.recipes):
                       configs, images, video, concept (a new word for the text-to-video model), __main__ (the
                       command line)
     widgets           the lessons' interactive widgets
     exercises/        one module of checks per lesson, build (student notebooks), grade, runner, nbgrader_source,
                       __main__ (python -m minidiff.exercises)
"""

from .utils import bf16_is_fast, device, fast_mode, seed_everything

__version__ = "0.1.0"
__all__ = ["bf16_is_fast", "device", "fast_mode", "seed_everything", "__version__"]
