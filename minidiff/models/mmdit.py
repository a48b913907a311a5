r"""MMDiT: the multimodal diffusion Transformer of Flux and Open-Sora v2, small enough for a laptop CPU.

Read next to Open-Sora's `opensora/models/mmdit/model.py` (MMDiTModel) and `layers.py`, or Flux's `src/flux/model.py`
and `src/flux/modules/layers.py`: the names and the data flow are theirs.

    x (B, C, T, H, W) VAE latents --pack--> img (B, T*H/2*W/2, C*4),  img_ids (frame, row, column)
    txt (B, L, context_in_dim) token sequence of the text encoder,    txt_ids = 0
    y_vec (B, vec_in_dim) pooled text vector
    prepare_block_inputs:
        img = img_in(img);  txt = txt_in(txt)
        vec = time_in(timestep_embedding(t, 256) with t x 1000) + vector_in(y_vec)     one vector per sample
        pe  = pe_embedder(cat(txt_ids, img_ids))                                    3-axis RoPE, text first
    double_blocks: img, txt = block(img, txt, vec, pe)      separate weights per stream, one joint attention
    single_blocks: x = block(cat(txt, img), vec, pe)         one stream, attention and MLP in parallel
    final_layer(x[:, L:], vec) --unpack--> velocity (B, C, T, H, W)

Image-to-video (Open-Sora v2's `cond_embed`): with MMDiTConfig(cond_embed=True), img_in(img) + cond_in(pack(cond)),
where cond = cat(mask, mask * known latent) says which latent frames are given (`i2v_condition`); all zeros (or
cond=None) means nothing is given: plain text-to-image or text-to-video. `cond_in` starts at zero.

Rectified flow as everywhere in minidiff: t in [0, 1], t = 1 is noise, the model predicts v = noise - x_0.

Deviation from upstream (documented, as the real systems are trained from checkpoints and have no init routine):
every Modulation Linear and the final layer start at zero (DiT's adaLN-Zero), so each block starts as the identity
and a fresh model predicts v = 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from ..checks import check_float_tensor, check_time_tensor
from ..config import Config
from .layers import (
    EmbedND,
    LastLayer,
    MLPEmbedder,
    Modulation,
    QKNorm,
    attention,
    mlp,
    modulate,
    patchify_video,
    timestep_embedding,
    unpatchify_video,
)

# ------------------------------------------------------------------------------------------------ packing and ids


def pack(x: torch.Tensor, patch_size: int = 2) -> torch.Tensor:
    """Latents (B, C, T, H, W) -> tokens (B, T*(H/p)*(W/p), C*p*p), as Open-Sora's `pack` (`patchify_video`)."""
    return patchify_video(x, patch_size)


def unpack(x: torch.Tensor, latent_frames: int, height: int, width: int, patch_size: int = 2) -> torch.Tensor:
    """The exact inverse of `pack`: tokens -> latents (B, C, T, H, W)."""
    return unpatchify_video(x, latent_frames, height, width, patch_size)


def i2v_condition(known: torch.Tensor, latent_frames: int) -> torch.Tensor:
    """The condition of image-to-video: `known` latent frames (B, C, K, H, W) at the start of a latent video of
    `latent_frames` frames, as Open-Sora v2 packs it for `cond_in`: cat(mask, mask * reference) ->
    (B, 1 + C, latent_frames, H, W), the mask 1 on the K known frames and 0 on the rest (where the reference is 0 too).
    """
    check_float_tensor("known", known)
    if known.ndim != 5 or not 1 <= known.shape[2] <= latent_frames:
        raise ValueError(f"known latent frames must have shape (B, C, K, H, W) with 1 <= K <= latent_frames = "
                         f"{latent_frames}, got {tuple(known.shape)}")
    b, c, k, h, w = known.shape
    mask = known.new_zeros(b, 1, latent_frames, h, w)
    mask[:, :, :k] = 1
    ref = known.new_zeros(b, c, latent_frames, h, w)
    ref[:, :, :k] = known
    return torch.cat([mask, ref], dim=1)


def prepare_img_ids(batch: int, latent_frames: int, height: int, width: int, patch_size: int = 2,
                    device: torch.device | str | None = None) -> torch.Tensor:
    """(B, T*(H/p)*(W/p), 3) float positions of the packed tokens, in the same order: [frame, row, column]
    (plain integers, counted in tokens)."""
    h, w = height // patch_size, width // patch_size
    grid = torch.meshgrid(torch.arange(latent_frames), torch.arange(h), torch.arange(w), indexing="ij")
    grid = torch.stack(grid, dim=-1)
    return grid.reshape(1, latent_frames * h * w, 3).float().expand(batch, -1, -1).to(device)


# ------------------------------------------------------------------------------------------------ blocks


def split_heads(qkv: torch.Tensor, num_heads: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A fused projection (B, L, 3D) -> q, k, v, each (B, H, L, D/H): `B L (K H D) -> K B H L D`."""
    b, n, _ = qkv.shape
    q, k, v = qkv.reshape(b, n, 3, num_heads, -1).permute(2, 0, 3, 1, 4)
    return q, k, v


class SelfAttention(nn.Module):
    """The attention weights of one stream: qkv projection, QK RMSNorm per head, output projection.
    (Flux's `SelfAttention`; the double-stream block calls its parts separately to attend jointly.)"""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"hidden size {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.norm = QKNorm(dim // num_heads)
        self.proj = nn.Linear(dim, dim)

    def split_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """tokens (B, L, D) -> q, k, v, each (B, H, L, D/H), with q and k RMS-normalised."""
        q, k, v = split_heads(self.qkv(x), self.num_heads)
        q, k = self.norm(q, k, v)
        return q, k, v

    def forward(self, x: torch.Tensor, pe: torch.Tensor | None = None) -> torch.Tensor:
        q, k, v = self.split_heads(x)
        return self.proj(attention(q, k, v, pe=pe))


class DoubleStreamBlock(nn.Module):
    r"""Video and text tokens each keep their own weights (modulation, norms, qkv, QK-norm, projection, MLP) but
    attend together, so each stream reads the other:

        (mod1, mod2) = img_mod(vec)                               likewise txt_mod for the text stream
        q, k, v = cat(txt_qkv(modulate(LN(txt))), img_qkv(modulate(LN(img))))     along the sequence, text first
        txt_attn, img_attn = split(attention(q, k, v, pe))
        img = img + mod1.gate * proj(img_attn);   img = img + mod2.gate * MLP(modulate(LN(img), mod2))
    """

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True):
        super().__init__()
        self.num_heads, self.hidden_size = num_heads, hidden_size
        self.img_mod = Modulation(hidden_size, 2)
        self.img_norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.img_attn = SelfAttention(hidden_size, num_heads, qkv_bias)
        self.img_norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.img_mlp = mlp(hidden_size, mlp_ratio)

        self.txt_mod = Modulation(hidden_size, 2)
        self.txt_norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.txt_attn = SelfAttention(hidden_size, num_heads, qkv_bias)
        self.txt_norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.txt_mlp = mlp(hidden_size, mlp_ratio)

    def forward(self, img: torch.Tensor, txt: torch.Tensor, vec: torch.Tensor, pe: torch.Tensor | None,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        img_mod1, img_mod2 = self.img_mod(vec)
        txt_mod1, txt_mod2 = self.txt_mod(vec)
        img_q, img_k, img_v = self.img_attn.split_heads(modulate(self.img_norm1(img), img_mod1.shift, img_mod1.scale))
        txt_q, txt_k, txt_v = self.txt_attn.split_heads(modulate(self.txt_norm1(txt), txt_mod1.shift, txt_mod1.scale))

        q, k, v = (torch.cat(pair, dim=2) for pair in ((txt_q, img_q), (txt_k, img_k), (txt_v, img_v)))
        attn = attention(q, k, v, pe=pe, mask=mask)
        txt_attn, img_attn = attn[:, :txt.shape[1]], attn[:, txt.shape[1]:]

        img = img + img_mod1.gate * self.img_attn.proj(img_attn)
        img = img + img_mod2.gate * self.img_mlp(modulate(self.img_norm2(img), img_mod2.shift, img_mod2.scale))
        txt = txt + txt_mod1.gate * self.txt_attn.proj(txt_attn)
        txt = txt + txt_mod2.gate * self.txt_mlp(modulate(self.txt_norm2(txt), txt_mod2.shift, txt_mod2.scale))
        return img, txt


class SingleStreamBlock(nn.Module):
    r"""One stream over cat(txt, img), attention and MLP computed in parallel from one modulated input
    (ViT-22B's parallel block, as in Flux):

        mod = modulation(vec);  h = modulate(LN(x), mod.shift, mod.scale)
        qkv, m = split(linear1(h), [3D, ratio D])
        x = x + mod.gate * linear2(cat(attention(q, k, v, pe), GELU(m)))
    """

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden size {hidden_size} is not divisible by num_heads {num_heads}")
        self.hidden_size, self.num_heads = hidden_size, num_heads
        self.mlp_hidden_dim = int(hidden_size * mlp_ratio)
        self.linear1 = nn.Linear(hidden_size, 3 * hidden_size + self.mlp_hidden_dim)
        self.linear2 = nn.Linear(hidden_size + self.mlp_hidden_dim, hidden_size)
        self.norm = QKNorm(hidden_size // num_heads)
        self.pre_norm = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp_act = nn.GELU(approximate="tanh")
        self.modulation = Modulation(hidden_size, 1)

    def forward(self, x: torch.Tensor, vec: torch.Tensor, pe: torch.Tensor | None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        (mod,) = self.modulation(vec)
        x_mod = modulate(self.pre_norm(x), mod.shift, mod.scale)
        qkv, m = torch.split(self.linear1(x_mod), [3 * self.hidden_size, self.mlp_hidden_dim], dim=-1)
        q, k, v = split_heads(qkv, self.num_heads)
        q, k = self.norm(q, k, v)
        out = self.linear2(torch.cat((attention(q, k, v, pe=pe, mask=mask), self.mlp_act(m)), dim=2))
        return x + mod.gate * out


# ------------------------------------------------------------------------------------------------ the model


@dataclass
class MMDiTConfig(Config):
    """Open-Sora's MMDiTConfig fields, at laptop scale (Open-Sora / Flux: in_channels 64, vec_in_dim 768,
    context_in_dim 4096, hidden_size 3072, num_heads 24, depth 19, depth_single_blocks 38, axes_dim (16, 56, 56))."""

    in_channels: int = 16  # token width = latent channels * patch_size^2 (Open-Sora: 16 * 2 * 2 = 64)
    patch_size: int = 2
    vec_in_dim: int = 64  # width of the pooled text vector y_vec
    context_in_dim: int = 64  # width of the text token sequence txt
    hidden_size: int = 128
    mlp_ratio: float = 4.0
    num_heads: int = 4
    depth: int = 2  # double-stream blocks
    depth_single_blocks: int = 2
    axes_dim: tuple[int, ...] = (8, 12, 12)  # RoPE dims per (frame, row, column); sum = hidden_size / num_heads
    theta: int = 10_000
    qkv_bias: bool = True
    time_factor: float = 1000.0  # t in [0, 1] is embedded as t * 1000, as in Flux's timestep_embedding
    use_rope: bool = True  # ablation switch: False gives the tokens no position information at all
    use_y_vec: bool = True  # ablation switch: False leaves the pooled text out of vec (time only)
    # REPA (Yu et al. 2024): width of the encoder features that a small MLP maps the video tokens to after
    # `repa_depth` double-stream blocks (0: no projector); used only by the training loss, never for sampling
    repa_dim: int = 0
    repa_depth: int = 1
    # image-to-video (Open-Sora v2): cond_in reads which latent frames are given, and their values (`i2v_condition`)
    cond_embed: bool = False

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if sum(self.axes_dim) != self.hidden_size // self.num_heads:
            raise ValueError(f"axes_dim {list(self.axes_dim)} must add up to the head dim "
                             f"{self.hidden_size // self.num_heads} (hidden_size / num_heads)")
        if self.repa_dim and not 1 <= self.repa_depth <= self.depth:
            raise ValueError(f"repa_depth {self.repa_depth} must name one of the {self.depth} double-stream blocks "
                             f"(1..{self.depth})")
        if self.in_channels % (self.patch_size ** 2):
            raise ValueError(f"in_channels {self.in_channels} (the packed token width) must be a multiple of "
                             f"patch_size^2 = {self.patch_size ** 2}")

    @property
    def latent_channels(self) -> int:
        return self.in_channels // self.patch_size ** 2


class MMDiT(nn.Module):
    """model(x, t, txt, y_vec, txt_mask=None, cond=None) -> predicted velocity, the shape of x.

    x: (B, C, T, H, W) noisy scaled VAE latents, C = in_channels / patch_size^2; t: (B,) in [0, 1] (1 = noise);
    txt: (B, L, context_in_dim) text tokens; y_vec: (B, vec_in_dim) pooled text; txt_mask: optional (B, L) bool,
    False for padding tokens (Open-Sora uses none); cond (with config.cond_embed): (B, 1 + C, T, H, W) from
    `i2v_condition`, the latent frames that are given; None = none given.
    """

    def __init__(self, config: MMDiTConfig):
        super().__init__()
        self.config = cfg = config
        self.in_channels = self.out_channels = cfg.in_channels
        self.hidden_size, self.num_heads = cfg.hidden_size, cfg.num_heads
        self.pe_embedder = EmbedND(cfg.hidden_size // cfg.num_heads, cfg.theta, list(cfg.axes_dim))
        self.img_in = nn.Linear(cfg.in_channels, cfg.hidden_size)
        self.time_in = MLPEmbedder(256, cfg.hidden_size)
        self.vector_in = MLPEmbedder(cfg.vec_in_dim, cfg.hidden_size) if cfg.use_y_vec else None
        self.txt_in = nn.Linear(cfg.context_in_dim, cfg.hidden_size)
        self.cond_in = (nn.Linear(cfg.in_channels + cfg.patch_size ** 2, cfg.hidden_size) if cfg.cond_embed
                        else None)
        self.double_blocks = nn.ModuleList(
            DoubleStreamBlock(cfg.hidden_size, cfg.num_heads, cfg.mlp_ratio, cfg.qkv_bias) for _ in range(cfg.depth))
        self.single_blocks = nn.ModuleList(
            SingleStreamBlock(cfg.hidden_size, cfg.num_heads, cfg.mlp_ratio) for _ in range(cfg.depth_single_blocks))
        self.final_layer = LastLayer(cfg.hidden_size, 1, self.out_channels)
        # REPA's projector: video tokens -> the encoder's feature width (as the `projectors` of REPA's SiT)
        self.repa_projector = (nn.Sequential(nn.Linear(cfg.hidden_size, 2 * cfg.hidden_size), nn.SiLU(),
                                             nn.Linear(2 * cfg.hidden_size, cfg.repa_dim)) if cfg.repa_dim else None)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Xavier-uniform Linears with zero biases, then (our deviation from upstream) adaLN-Zero: every Modulation
        and the final layer start at zero, so each block is the identity and the output is 0 at step 0."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        for emb in (self.time_in, self.vector_in):
            if emb is None:
                continue
            nn.init.normal_(emb.in_layer.weight, std=0.02)
            nn.init.normal_(emb.out_layer.weight, std=0.02)
        for m in self.modules():
            if isinstance(m, Modulation):
                nn.init.zeros_(m.lin.weight)
                nn.init.zeros_(m.lin.bias)
        for layer in (self.final_layer.adaLN_modulation[-1], self.final_layer.linear, self.cond_in):
            if layer is not None:  # cond_in at zero (as Open-Sora): a new condition changes nothing at first
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)

    def _check(self, x: torch.Tensor, t: torch.Tensor, txt: torch.Tensor, y_vec: torch.Tensor,
               cond: torch.Tensor | None = None) -> None:
        cfg = self.config
        c, p = cfg.latent_channels, cfg.patch_size
        check_float_tensor("x", x)
        if x.ndim != 5 or x.shape[1] != c:
            raise ValueError(f"MMDiT expects latents (B, {c}, T, H, W), got shape {tuple(x.shape)}")
        if x.shape[3] % p or x.shape[4] % p:
            raise ValueError(f"latent height and width {x.shape[3]}x{x.shape[4]} must be divisible by the patch "
                             f"size {p}")
        b = x.shape[0]
        check_time_tensor(t, b)
        check_float_tensor("txt", txt)
        check_float_tensor("y_vec", y_vec)
        if txt.ndim != 3 or txt.shape[0] != b or txt.shape[2] != cfg.context_in_dim:
            raise ValueError(f"txt must have shape ({b}, L, {cfg.context_in_dim}), got {tuple(txt.shape)}")
        if y_vec.ndim != 2 or y_vec.shape != (b, cfg.vec_in_dim):
            raise ValueError(f"y_vec must have shape ({b}, {cfg.vec_in_dim}), got {tuple(y_vec.shape)}")
        if cond is not None:
            if not cfg.cond_embed:
                raise ValueError("this MMDiT takes no image condition (cond): build it with "
                                 "MMDiTConfig(cond_embed=True) to train image-to-video")
            check_float_tensor("cond", cond)
            want = (b, 1 + c, *x.shape[2:])
            if tuple(cond.shape) != want:
                raise ValueError(f"cond must have shape {want} (mask and known latent frames, see i2v_condition), "
                                 f"got {tuple(cond.shape)}")

    def prepare_block_inputs(self, img: torch.Tensor, img_ids: torch.Tensor, txt: torch.Tensor,
                             txt_ids: torch.Tensor, timesteps: torch.Tensor, y_vec: torch.Tensor,
                             cond: torch.Tensor | None = None
                             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Project every input to the model width: (img, txt, vec, pe), as Open-Sora's method of the same name
        (`cond`: the packed image condition, or None)."""
        img = self.img_in(img)
        if self.cond_in is not None:  # nothing given = an all-zero condition (Open-Sora's text-to-video)
            img = img + self.cond_in(cond if cond is not None else img.new_zeros(*img.shape[:2],
                                                                                  self.cond_in.in_features))
        vec = self.time_in(timestep_embedding(timesteps, 256, time_factor=self.config.time_factor))
        if self.vector_in is not None:
            vec = vec + self.vector_in(y_vec)
        txt = self.txt_in(txt)
        pe = self.pe_embedder(torch.cat((txt_ids, img_ids), dim=1)) if self.config.use_rope else None
        return img, txt, vec, pe

    def forward(self, x: torch.Tensor, t: torch.Tensor, txt: torch.Tensor, y_vec: torch.Tensor,
                txt_mask: torch.Tensor | None = None, cond: torch.Tensor | None = None, return_repa: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The velocity (B, C, T, H, W); with `return_repa`, also the projected video tokens (B, N, repa_dim) after
        `repa_depth` double-stream blocks, for REPA's alignment loss (`minidiff.repa`)."""
        self._check(x, t, txt, y_vec, cond)
        if return_repa and self.repa_projector is None:
            raise ValueError("this MMDiT has no REPA projector: build it with MMDiTConfig(repa_dim=...)")
        b, _, latent_frames, height, width = x.shape
        p = self.config.patch_size
        img = pack(x, p)
        # every sample has the same grid, so one copy of the ids (batch 1) is broadcast over the batch
        img_ids = prepare_img_ids(1, latent_frames, height, width, p, x.device)
        txt_ids = torch.zeros(1, txt.shape[1], 3, device=x.device)
        mask = None
        if txt_mask is not None:  # image tokens are never masked
            mask = torch.cat([txt_mask.bool(), torch.ones(b, img.shape[1], dtype=torch.bool, device=x.device)], 1)

        img, txt, vec, pe = self.prepare_block_inputs(img, img_ids, txt, txt_ids, t, y_vec,
                                                      None if cond is None else pack(cond, p))
        aligned = None
        for i, block in enumerate(self.double_blocks):
            img, txt = block(img, txt, vec, pe, mask)
            if return_repa and i + 1 == self.config.repa_depth:
                aligned = self.repa_projector(img)
        img = torch.cat((txt, img), dim=1)
        for block in self.single_blocks:
            img = block(img, vec, pe, mask)
        img = img[:, txt.shape[1]:, ...]
        img = self.final_layer(img, vec)
        out = unpack(img, latent_frames, height, width, p)
        return (out, aligned) if return_repa else out
