"""Checks for lesson 08 (the text-to-video MMDiT)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..guidance import cfg_combine
from ..models import layers, mmdit
from ._common import CheckFailed, as_tensor, call, close, ok


def _dit_order(x: torch.Tensor, p: int) -> torch.Tensor:
    """Spacetime tokens with DiT's (p, p, C) feature order instead of Open-Sora's (C, p, p)."""
    b, c, t, h, w = x.shape
    x = x.reshape(b, c, t, h // p, p, w // p, p).permute(0, 2, 3, 5, 4, 6, 1)
    return x.reshape(b, t * (h // p) * (w // p), p * p * c)


def check_pack(fn: Callable) -> None:
    """fn(x, p): latents (B, C, T, H, W) -> tokens (B, T*(H/p)*(W/p), C*p*p), `b c t (h ph) (w pw) -> b (t h w)
    (c ph pw)` (Open-Sora's and Flux's pack)."""
    name = "pack"
    g = torch.Generator().manual_seed(81)
    for shape, p in [((2, 4, 3, 8, 8), 2), ((1, 3, 2, 4, 6), 2), ((1, 2, 1, 6, 3), 3), ((1, 1, 2, 2, 2), 1)]:
        x = torch.randn(shape, generator=g)
        want = layers.patchify_video(x, p)
        out = as_tensor(call(fn, name, x.clone(), p), f"{name}(x of shape {shape}, p={p})", tuple(want.shape))
        if close(out, want, atol=0, rtol=0):
            continue
        xd = x.double()
        if close(out, _dit_order(xd, p), atol=0, rtol=0):
            hint = ("those are DiT's (row, column, channel) features; Open-Sora and Flux put the channel first: "
                    "feature index c*p*p + ph*p + pw")
        elif close(out.sort(dim=-1).values, want.double().sort(dim=-1).values, atol=0, rtol=0):
            hint = ("each token holds the right numbers in the wrong order: within a token the channel varies "
                    "slowest, then the patch row, then the patch column")
        else:
            hint = ("first separate each spatial axis into (which patch, where inside it); then bring the axes that "
                    "say which token to the front (frame, patch row, patch column) and the ones that say which "
                    "number inside the token to the back; time is not patched")
        raise CheckFailed(f"{name}: wrong tokens for latents of shape {shape} with p={p}. Hint: {hint}.")
    ok(name, "matches Open-Sora's pack for 4 latent shapes (p = 1, 2, 3)")


def check_apply_rope(fn: Callable) -> None:
    """fn(xq, xk, freqs_cis) -> (xq, xk) rotated pair by pair: out[2j:2j+2] = R_j @ x[2j:2j+2] with R_j =
    freqs_cis[..., j, :, :] (Flux's interleaved layout)."""
    name = "apply_rope"
    g = torch.Generator().manual_seed(82)
    q, k = torch.randn(2, 2, 7, 16, generator=g), torch.randn(2, 2, 7, 16, generator=g)
    ids = torch.randint(0, 6, (2, 7, 3), generator=g).float()
    pe = layers.EmbedND(16, 10_000, [4, 6, 6])(ids)
    out = call(fn, name, q.clone(), k.clone(), pe.clone())
    if not (isinstance(out, tuple | list) and len(out) == 2):
        raise CheckFailed(f"{name} should return a pair (rotated q, rotated k)")
    rq, rk = as_tensor(out[0], name + " q", tuple(q.shape)), as_tensor(out[1], name + " k", tuple(k.shape))
    wq, wk = layers.apply_rope(q, k, pe)
    if close(rq, wq) and close(rk, wk):
        zq, _ = call(fn, name, q.clone(), k.clone(), layers.EmbedND(16, 10_000, [4, 6, 6])(torch.zeros(2, 7, 3)))
        if close(as_tensor(zq, name, tuple(q.shape)), q):
            ok(name, "rotates q and k like Flux's apply_rope, and position 0 leaves them unchanged")
            return
    inv = pe.clone()
    inv[..., 0, 1], inv[..., 1, 0] = pe[..., 1, 0], pe[..., 0, 1]  # the transposed (inverse) rotations
    if close(rq, layers.apply_rope(q, k, inv)[0]):
        hint = ("you rotated the wrong way: that is the transposed (inverse) matrix. Multiply the matrix by the "
                "pair (matrix on the left), as in the equation above")
    elif close(rq, wq) and not close(rk, wk):
        hint = "rotate the keys as well as the queries (v is the one left alone)"
    elif not torch.allclose(rq.norm(dim=-1), q.double().norm(dim=-1), atol=1e-4):
        hint = "a rotation keeps every vector's length; yours changes it"
    else:
        hint = ("the pairs are adjacent dimensions (x[2j], x[2j+1]), and pair j is rotated by matrix j of its "
                "token; a rotated pair is the matrix's first column times x[2j] plus its second column times "
                "x[2j+1]")
    raise CheckFailed(f"{name}: wrong rotation for q, k of shape (2, 2, 7, 16). Hint: {hint}.")


def check_modulated_residual(fn: Callable) -> None:
    """fn(x, f, mod, norm) -> x + mod.gate * f(modulate(norm(x), mod.shift, mod.scale)): one adaLN residual."""
    name = "modulated_residual"
    g = torch.Generator().manual_seed(83)
    x = torch.randn(2, 5, 8, generator=g)
    mod = layers.ModulationOut(*(torch.randn(2, 1, 8, generator=g) for _ in range(3)))
    norm = torch.nn.LayerNorm(8, elementwise_affine=False, eps=1e-6)
    lin = torch.nn.Linear(8, 8)
    torch.nn.init.normal_(lin.weight, generator=g)
    with torch.no_grad():
        want = x + mod.gate * lin(layers.modulate(norm(x), mod.shift, mod.scale))
        out = as_tensor(call(fn, name, x.clone(), lin, mod, norm), name, tuple(x.shape))
        if close(out, want):
            zero = layers.ModulationOut(mod.shift, mod.scale, torch.zeros_like(mod.gate))
            if close(as_tensor(call(fn, name, x.clone(), lin, zero, norm), name, tuple(x.shape)), x):
                ok(name, "x + gate * f(modulate(LN(x), shift, scale)), and the identity when gate = 0")
                return
        candidates = {
            "without the gate, a fresh adaLN-Zero block is not the identity: multiply the branch by mod.gate":
                x + lin(layers.modulate(norm(x), mod.shift, mod.scale)),
            "use (1 + scale), not scale, so that scale = 0 leaves LN(x) unchanged":
                x + mod.gate * lin(norm(x) * mod.scale + mod.shift),
            "normalise first, then modulate: modulate(LN(x), ...), not LN(modulate(x, ...))":
                x + mod.gate * lin(norm(layers.modulate(x, mod.shift, mod.scale))),
            "keep the residual: add the branch to x": mod.gate * lin(layers.modulate(norm(x), mod.shift, mod.scale)),
        }
    for hint, wrong in candidates.items():
        if close(out, wrong):
            raise CheckFailed(f"{name}: wrong result. Hint: {hint}.")
    raise CheckFailed(f"{name}: wrong result. Hint: the branch reads the normalised, then modulated input; its "
                      "output is gated and added back to x (the equation above, read from the inside out).")


def check_joint_attention(fn: Callable) -> None:
    """fn(txt_q, txt_k, txt_v, img_q, img_k, img_v, pe) -> (txt_attn, img_attn): one attention over cat(txt, img),
    text first (pe is laid out text first), split back into the two streams."""
    name = "joint_attention"
    g = torch.Generator().manual_seed(84)
    lt, li = 3, 6
    tq, tk, tv = (torch.randn(2, 2, lt, 16, generator=g) for _ in range(3))
    iq, ik, iv = (torch.randn(2, 2, li, 16, generator=g) for _ in range(3))
    ids = torch.cat([torch.zeros(2, lt, 3), mmdit.prepare_img_ids(2, 2, 6, 2, 2)], dim=1)
    pe = layers.EmbedND(16, 10_000, [4, 6, 6])(ids)
    out = call(fn, name, tq, tk, tv, iq, ik, iv, pe)
    if not (isinstance(out, tuple | list) and len(out) == 2):
        raise CheckFailed(f"{name} should return a pair (txt_attn, img_attn)")
    a_txt = as_tensor(out[0], name + " txt_attn", (2, lt, 32))
    a_img = as_tensor(out[1], name + " img_attn", (2, li, 32))
    full = layers.attention(torch.cat([tq, iq], 2), torch.cat([tk, ik], 2), torch.cat([tv, iv], 2), pe=pe)
    if close(a_txt, full[:, :lt]) and close(a_img, full[:, lt:]):
        ok(name, "one attention over cat(txt, img) with RoPE, split back into text (3 tokens) and video (6)")
        return
    img_first = [layers.attention(torch.cat([iq, tq], 2), torch.cat([ik, tk], 2), torch.cat([iv, tv], 2), pe=e)
                 for e in (pe, layers.EmbedND(16, 10_000, [4, 6, 6])(torch.cat([ids[:, lt:], ids[:, :lt]], 1)))]
    if any(close(a_img, f[:, :li]) or close(a_txt, f[:, li:]) for f in img_first):
        hint = "put the text first: Flux and Open-Sora concatenate (txt, img), and pe is computed in that order"
    elif close(a_img, layers.attention(iq, ik, iv, pe=pe[:, :, lt:])[:, :]):
        hint = ("that is two separate attentions: the point of MMDiT is that video tokens also attend to text tokens "
                "(and vice versa) in one softmax over the concatenated sequence")
    else:
        hint = ("one sequence: join the two streams' queries (and keys, values) along the token axis, text first; "
                "attend once with pe; the output's first L_txt tokens are the text part, the rest the video part")
    raise CheckFailed(f"{name}: wrong result. Hint: {hint}.")


def _toy_velocity(x: torch.Tensor, t: torch.Tensor, txt: torch.Tensor, y_vec: torch.Tensor) -> torch.Tensor:
    t_b = t.reshape(-1, *([1] * (x.ndim - 1)))
    return torch.tanh(x) * (0.5 + t_b) + (txt.mean((1, 2)) + y_vec.mean(1)).reshape(-1, *([1] * (x.ndim - 1)))


def check_guided_euler_step(fn: Callable) -> None:
    """fn(model, x, t_cur, t_next, cond, null, scale) -> x + (t_next - t_cur) * (u + scale (c - u)), with
    c = model(x, t_cur, **cond) and u = model(x, t_cur, **null) (null: the same keys, the empty caption's values)."""
    name = "guided_euler_step"
    g = torch.Generator().manual_seed(85)
    x = torch.randn(3, 2, 2, 4, 4, generator=g)
    cond = {"txt": torch.randn(3, 4, 5, generator=g), "y_vec": torch.randn(3, 6, generator=g)}
    null = {"txt": torch.zeros(3, 4, 5), "y_vec": torch.zeros(3, 6)}
    for t_cur, t_next, scale in [(1.0, 0.9, 4.0), (0.5, 0.25, 1.0), (0.2, 0.0, 0.0)]:
        tc = torch.full((3,), t_cur)
        c, u = _toy_velocity(x, tc, **cond), _toy_velocity(x, tc, **null)
        want = x + (t_next - t_cur) * cfg_combine(c, u, scale)
        out = as_tensor(call(fn, name, _toy_velocity, x.clone(), t_cur, t_next, cond, null, scale), name,
                        tuple(x.shape))
        if close(out, want):
            continue
        if close(out, x + (t_cur - t_next) * cfg_combine(c, u, scale)):
            hint = "time runs from 1 to 0: the step is (t_next - t_cur) * v, a negative multiple of v"
        elif close(out, x + (t_next - t_cur) * cfg_combine(u, c, scale)):
            hint = "cond and uncond are swapped: start from the unconditional prediction and move towards cond"
        elif close(out, x + (t_next - t_cur) * scale * c):
            hint = ("guidance extrapolates from the unconditional prediction along the difference (cond minus "
                    "uncond), it does not just scale cond")
        else:
            hint = ("both predictions are made at the step's start, t_cur (as a tensor of shape (B,)); an Euler "
                    "step moves x along the guided velocity for the time from t_cur to t_next")
        raise CheckFailed(f"{name}: wrong step from t={t_cur} to {t_next} with scale {scale}. Hint: {hint}.")
    ok(name, "one guided Euler step, for scales 4, 1 and 0")


def _random_block(cls, seed: int):
    """A block of width 32 with 2 heads and every weight random (std 0.1, so no gate is zero), a generator for its
    inputs, and the RoPE of 4 text tokens (ids 0) followed by a 3 x 4 x 4 latent packed with patch 2 (12 tokens)."""
    torch.manual_seed(seed)
    block = cls(32, 2)
    for p in block.parameters():
        torch.nn.init.normal_(p, std=0.1)
    ids = torch.cat([torch.zeros(2, 4, 3), mmdit.prepare_img_ids(2, 3, 4, 4, 2)], dim=1)
    return block, torch.Generator().manual_seed(seed), layers.EmbedND(16, 10_000, [4, 6, 6])(ids)


def check_double_stream_block(fn: Callable) -> None:
    """fn(block, img, txt, vec, pe) -> (img, txt): the whole DoubleStreamBlock forward written with the block's own
    submodules (img_mod, img_norm1, img_attn, ..., txt_mlp), checked against minidiff's on random weights."""
    name = "double_stream_block"
    block, g, pe = _random_block(mmdit.DoubleStreamBlock, 86)
    img, txt, vec = torch.randn(2, 12, 32, generator=g), torch.randn(2, 4, 32, generator=g), torch.randn(2, 32,
                                                                                                      generator=g)
    with torch.no_grad():
        want_img, want_txt = block(img, txt, vec, pe)
        out = call(fn, name, block, img.clone(), txt.clone(), vec.clone(), pe)
    if not (isinstance(out, tuple | list) and len(out) == 2):
        raise CheckFailed(f"{name} should return a pair (img, txt), in that order (as Flux's block does)")
    shapes = tuple(tuple(o.shape) if isinstance(o, torch.Tensor) else None for o in out)
    if shapes == (tuple(txt.shape), tuple(img.shape)):
        raise CheckFailed(f"{name}: got (txt, img). Hint: return (img, txt), in that order (as Flux's block does).")
    got_img = as_tensor(out[0], name + " img", tuple(img.shape))
    got_txt = as_tensor(out[1], name + " txt", tuple(txt.shape))
    if close(got_img, want_img, atol=1e-4) and close(got_txt, want_txt, atol=1e-4):
        ok(name, "matches minidiff's DoubleStreamBlock on random weights (video 12 tokens, text 4)")
        return
    if close(got_img, want_img, atol=1e-4):
        hint = "the video stream is right; check the text stream (its own txt_mod, txt_norm*, txt_attn, txt_mlp)"
    elif close(got_txt, want_txt, atol=1e-4):
        hint = "the text stream is right; check the video stream (img_mod, img_norm*, img_attn, img_mlp)"
    else:
        hint = ("each stream uses only its own weights (modulation, norms, attention projections, MLP); the one "
                "thing they share is the joint attention; then each stream has two modulated residuals, attention "
                "then MLP, as in the modulated-residual exercise")
    raise CheckFailed(f"{name}: wrong result. Hint: {hint}.")


def check_i2v_condition(fn: Callable) -> None:
    """fn(known, frames): the K known latent frames (B, C, K, H, W) at the start of a `frames`-long latent video ->
    the image-to-video condition (B, 1 + C, frames, H, W), Open-Sora v2's cat(mask, mask * reference):
    `models.mmdit.i2v_condition`."""
    name = "i2v_condition"
    g = torch.Generator().manual_seed(88)
    for shape, frames in [((2, 4, 1, 8, 8), 3), ((1, 3, 2, 4, 6), 5), ((1, 4, 1, 4, 4), 1)]:
        known = torch.randn(shape, generator=g)
        want = mmdit.i2v_condition(known, frames).double()
        out = as_tensor(call(fn, name, known.clone(), frames), f"{name}(known of shape {shape}, frames={frames})",
                        tuple(want.shape))
        if close(out, want, atol=0, rtol=0):
            continue
        c, k = shape[1], shape[2]
        ref = out[:, 1:]
        if close(torch.cat([out[:, c:], out[:, :c]], 1), want, atol=0, rtol=0):
            hint = "the channels are in the other order: the real systems put the mask first"
        elif close(ref[:, :, :k], want[:, 1:, :k], atol=0, rtol=0) and not close(ref[:, :, k:], want[:, 1:, k:]):
            hint = ("the frames that are not given must hold zeros in the reference channels: the model is to see "
                    "nothing there (the mask says so), not a copy of what is known")
        elif close(ref, want[:, 1:], atol=0, rtol=0):
            hint = ("the mask must say which frames are given: 1 on each of the K known frames, 0 on every later "
                    "frame, the same at every place in a frame")
        else:
            hint = ("the reference channels hold the known frames where they are, at the start of the video, and "
                    "zeros on the rest; one more channel in front holds the mask")
        raise CheckFailed(f"{name}: wrong condition for known frames of shape {shape} and frames={frames}. "
                          f"Hint: {hint}.")
    ok(name, "matches the package's i2v_condition for 3 shapes (1 or 2 known frames, 1 to 5 latent frames)")


def _single_block_variant(block, x, vec, pe, gate=True, qk_norm=True, order="qkv_first", act=True, residual=True,
                          rope=True):
    """SingleStreamBlock.forward written out, or with one mistake (for the hints and the tests)."""
    (mod,) = block.modulation(vec)
    h = layers.modulate(block.pre_norm(x), mod.shift, mod.scale)
    d3, dm = 3 * block.hidden_size, block.mlp_hidden_dim
    if order == "qkv_first":
        qkv, m = torch.split(block.linear1(h), [d3, dm], dim=-1)
    else:
        m, qkv = torch.split(block.linear1(h), [dm, d3], dim=-1)
    q, k, v = mmdit.split_heads(qkv, block.num_heads)
    if qk_norm:
        q, k = block.norm(q, k, v)
    attn = layers.attention(q, k, v, pe=pe if rope else None)
    out = block.linear2(torch.cat((attn, block.mlp_act(m) if act else m), dim=2))
    out = mod.gate * out if gate else out
    return x + out if residual else out


def check_single_stream_block(fn: Callable) -> None:
    """fn(block, x, vec, pe) -> x: the SingleStreamBlock forward from the block's parts (modulation, pre_norm,
    linear1, norm, mlp_act, linear2, hidden_size, mlp_hidden_dim, num_heads), on random weights."""
    name = "single_stream_forward"
    block, g, pe = _random_block(mmdit.SingleStreamBlock, 87)
    x, vec = torch.randn(2, 16, 32, generator=g), torch.randn(2, 32, generator=g)
    with torch.no_grad():
        want = block(x, vec, pe)
        got = as_tensor(call(fn, name, block, x.clone(), vec.clone(), pe), name, tuple(x.shape))
        if close(got, want, atol=1e-4):
            ok(name, "matches minidiff's SingleStreamBlock on random weights (4 text + 12 video tokens)")
            return
        suspects = [
            (dict(order="mlp_first"), "linear1's output holds the 3D numbers for q, k, v first, then the MLP's "
                                      "hidden units"),
            (dict(gate=False), "the block's output is gated before it is added: without the gate a fresh "
                               "(adaLN-Zero) block would not be the identity"),
            (dict(residual=False), "keep the residual: the block adds its output to x"),
            (dict(qk_norm=False), "queries and keys are RMS-normalised per head (block.norm) before attention, as in "
                                  "the double-stream block"),
            (dict(act=False), "the MLP half passes through the activation (block.mlp_act) before linear2"),
            (dict(rope=False), "the positions enter through RoPE: pass pe to the attention"),
        ]
        hint = next((h for kw, h in suspects if close(got, _single_block_variant(block, x, vec, pe, **kw),
                                                      atol=1e-4)), None) or (
            "one modulated input feeds both halves at once (ViT-22B's parallel block): one linear layer makes the "
            "attention's q, k, v and the MLP's hidden units, one more mixes both results back to D")
    raise CheckFailed(f"{name}: differs from minidiff's SingleStreamBlock by up to "
                      f"{float((got - want).abs().max()):.3g}. Hint: {hint}.")


def _img_ids_variant(batch, frames, height, width, p, units="tokens", order="frc", raster="row", start=0):
    h, w = (height // p, width // p) if units == "tokens" else (height, width)
    step = 1 if units == "tokens" else p
    f, r, c = torch.meshgrid(torch.arange(frames) + start, torch.arange(0, h, step) if units != "tokens" else
                             torch.arange(h), torch.arange(0, w, step) if units != "tokens" else torch.arange(w),
                             indexing="ij")
    if raster == "column":
        f, r, c = (a.transpose(1, 2) for a in (f, r, c))
    axes = {"frc": (f, r, c), "rcf": (r, c, f)}[order]
    grid = torch.stack(axes, dim=-1).reshape(1, -1, 3).float()
    return grid.expand(batch, -1, -1).clone()


def check_prepare_img_ids(fn: Callable) -> None:
    """fn(batch, frames, height, width, p) -> (batch, frames*(height/p)*(width/p), 3) float positions of the
    packed video tokens, in pack's order: (frame, row, column), counted in tokens."""
    name = "prepare_img_ids"
    for args in [(2, 3, 8, 8, 2), (1, 2, 12, 8, 4), (1, 1, 6, 4, 2)]:
        b, t, h, w, p = args
        want = mmdit.prepare_img_ids(*args)
        out = call(fn, name, *args)
        if isinstance(out, torch.Tensor) and tuple(out.shape) == tuple(want.shape) and not out.dtype.is_floating_point:
            raise CheckFailed(f"{name} returned dtype {out.dtype}: the ids go through sin and cos in RoPE, so return "
                              "floats (the positions themselves are whole numbers)")
        got = as_tensor(out, f"{name}{args}", tuple(want.shape))
        if close(got, want, atol=0, rtol=0):
            continue
        suspects = [
            (dict(units="pixels"), "count positions in tokens (patches), not in latent pixels: neighbouring tokens "
                                   "are 1 apart"),
            (dict(order="rcf"), "each id is (frame, row, column), frame first, as Flux's (index, row, column)"),
            (dict(raster="column"), "the tokens run in pack's order: frame by frame, and within a frame row by row "
                                    "(the column changes fastest)"),
            (dict(start=1), "count from 0: the first frame, row and column are position 0"),
        ]
        hint = next((hn for kw, hn in suspects if close(got, _img_ids_variant(*args, **kw), atol=0, rtol=0)),
                    None) or "one (frame, row, column) triple per token, in the order pack puts the tokens, every " \
                             "batch element the same"
        raise CheckFailed(f"{name}: wrong ids for batch {b}, {t} frames of {h}x{w}, p={p}. Hint: {hint}.")
    ok(name, "(frame, row, column) per token in pack's order, for 3 latent shapes and patch sizes 2 and 4")
