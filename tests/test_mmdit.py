"""The MMDiT (Flux / Open-Sora v2 architecture): packing, RoPE, joint attention, the two kinds of blocks, the model."""

import pytest
import torch

from minidiff.guidance import ClassifierFreeGuidance
from minidiff.models.layers import EmbedND, apply_rope, attention, modulate, rope
from minidiff.models.mmdit import (
    DoubleStreamBlock,
    MMDiT,
    MMDiTConfig,
    SingleStreamBlock,
    pack,
    prepare_img_ids,
    unpack,
)

SMALL = MMDiTConfig(hidden_size=32, num_heads=2, depth=1, depth_single_blocks=1, axes_dim=(4, 6, 6),
                    context_in_dim=8, vec_in_dim=8)


def _randomise(module: torch.nn.Module, std: float = 0.1) -> torch.nn.Module:
    """Replace the zero init (every block starts as the identity) by random weights, so blocks do something."""
    torch.manual_seed(0)
    for p in module.parameters():
        torch.nn.init.normal_(p, std=std)
    return module


def _inputs(b=2, frames=3, h=8, w=8, cfg=SMALL, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, cfg.latent_channels, frames, h, w, generator=g)
    return x, torch.rand(b, generator=g), torch.randn(b, 5, cfg.context_in_dim, generator=g), \
        torch.randn(b, cfg.vec_in_dim, generator=g)


def test_pack_unpack_and_img_ids_follow_open_soras_order():
    x = torch.randn(2, 4, 3, 8, 6)
    img = pack(x, 2)
    assert img.shape == (2, 3 * 4 * 3, 16)
    assert torch.equal(unpack(img, 3, 8, 6, 2), x)
    ids = prepare_img_ids(2, 3, 8, 6, 2)
    assert ids.shape == (2, 36, 3)
    # token k sits at (frame, row, column) = ids[k]; its features are that 2x2 patch, channel first
    k = 1 * 12 + 2 * 3 + 1
    f, r, c = ids[0, k].long().tolist()
    assert (f, r, c) == (1, 2, 1)
    torch.testing.assert_close(img[0, k].reshape(4, 2, 2), x[0, :, f, 2 * r:2 * r + 2, 2 * c:2 * c + 2])


def test_rope_keeps_norms_is_the_identity_at_zero_and_depends_on_relative_position():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 2, 5, 16, generator=g), torch.randn(1, 2, 5, 16, generator=g)
    emb = EmbedND(16, 10_000, [4, 6, 6])
    ids = torch.randint(0, 8, (1, 5, 3), generator=g).float()
    rq, rk = apply_rope(q, k, emb(ids))
    torch.testing.assert_close(rq.norm(dim=-1), q.norm(dim=-1))
    zq, zk = apply_rope(q, k, emb(torch.zeros(1, 5, 3)))
    torch.testing.assert_close(zq, q)
    torch.testing.assert_close(zk, k)
    # shifting every position by the same amount leaves every q.k unchanged: RoPE encodes relative positions
    aq, ak = apply_rope(q, k, emb(ids + 3.0))
    torch.testing.assert_close(aq @ ak.transpose(-1, -2), rq @ rk.transpose(-1, -2), atol=1e-4, rtol=1e-4)
    assert rope(torch.zeros(1, 3), 4).shape == (1, 3, 2, 2, 2)
    with pytest.raises(ValueError, match="add up to the head dim"):
        EmbedND(16, 10_000, [4, 4, 4])


def test_attention_mask_hides_padding_keys():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 2, 6, 8, generator=g) for _ in range(3))
    mask = torch.tensor([[True] * 6, [True, True, False, False, True, True]])
    out = attention(q, k, v, mask=mask)
    k2, v2 = k.clone(), v.clone()
    k2[1, :, 2:4] += 5.0
    v2[1, :, 2:4] -= 3.0  # change only the masked keys and values
    torch.testing.assert_close(attention(q, k2, v2, mask=mask)[1], out[1])
    with pytest.raises(ValueError, match="attention mask must have shape"):
        attention(q, k, v, mask=mask[:, :4])


def _reference_joint_block(block: DoubleStreamBlock, img, txt, vec, pe):
    """A plain Transformer block over cat(txt, img) with the image stream's weights (valid when both streams'
    weights are equal)."""
    mod1, mod2 = block.img_mod(vec)
    x = torch.cat([txt, img], dim=1)
    q, k, v = block.img_attn.split_heads(modulate(block.img_norm1(x), mod1.shift, mod1.scale))
    x = x + mod1.gate * block.img_attn.proj(attention(q, k, v, pe=pe))
    x = x + mod2.gate * block.img_mlp(modulate(block.img_norm2(x), mod2.shift, mod2.scale))
    return x[:, txt.shape[1]:], x[:, :txt.shape[1]]


def test_double_stream_joint_attention_equals_attention_over_the_concatenated_sequence():
    block = _randomise(DoubleStreamBlock(32, 2))
    for name, p in block.named_parameters():  # make the text stream a copy of the image stream
        if name.startswith("txt_"):
            p.data.copy_(dict(block.named_parameters())["img_" + name[4:]].data)
    g = torch.Generator().manual_seed(2)
    img, txt, vec = torch.randn(2, 12, 32, generator=g), torch.randn(2, 4, 32, generator=g), torch.randn(2, 32,
                                                                                                      generator=g)
    ids = torch.cat([torch.zeros(2, 4, 3), prepare_img_ids(2, 3, 4, 4, 2)], dim=1)
    pe = EmbedND(16, 10_000, [4, 6, 6])(ids)
    got_img, got_txt = block(img, txt, vec, pe)
    want_img, want_txt = _reference_joint_block(block, img, txt, vec, pe)
    torch.testing.assert_close(got_img, want_img, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got_txt, want_txt, atol=1e-5, rtol=1e-5)


def test_double_stream_keeps_weights_separate_but_mixes_in_attention():
    block = _randomise(DoubleStreamBlock(32, 2))
    img_params = {id(p) for n, p in block.named_parameters() if n.startswith("img_")}
    txt_params = {id(p) for n, p in block.named_parameters() if n.startswith("txt_")}
    assert img_params and txt_params and not img_params & txt_params
    assert len(img_params) + len(txt_params) == len(list(block.parameters()))
    g = torch.Generator().manual_seed(3)
    img, txt, vec = torch.randn(1, 6, 32, generator=g), torch.randn(1, 3, 32, generator=g), torch.randn(1, 32,
                                                                                                     generator=g)
    pe = EmbedND(16, 10_000, [4, 6, 6])(torch.zeros(1, 9, 3))
    out_img, out_txt = block(img, txt, vec, pe)
    # the text tokens reach the image stream (through attention) ...
    assert not torch.allclose(block(img, torch.randn(1, 3, 32, generator=g), vec, pe)[0], out_img)
    # ... but the text stream's own MLP only ever touches the text stream
    with torch.no_grad():
        block.txt_mlp[0].weight.add_(1.0)
    new_img, new_txt = block(img, txt, vec, pe)
    torch.testing.assert_close(new_img, out_img)
    assert not torch.allclose(new_txt, out_txt)


def test_single_stream_block_is_parallel_attention_plus_mlp_and_starts_as_identity():
    fresh = SingleStreamBlock(32, 2)
    torch.nn.init.zeros_(fresh.modulation.lin.weight)
    torch.nn.init.zeros_(fresh.modulation.lin.bias)
    x, vec = torch.randn(2, 7, 32), torch.randn(2, 32)
    pe = EmbedND(16, 10_000, [4, 6, 6])(torch.zeros(2, 7, 3))
    torch.testing.assert_close(fresh(x, vec, pe), x)  # gate 0: the identity
    block = _randomise(SingleStreamBlock(32, 2))
    assert block.linear1.out_features == 3 * 32 + 4 * 32 and block.linear2.in_features == 32 + 4 * 32
    assert block(x, vec, pe).shape == x.shape


def test_mmdit_shapes_zero_init_gradients_and_determinism():
    model = MMDiT(SMALL)
    x, t, txt, y_vec = _inputs()
    out = model(x, t, txt, y_vec)
    assert out.shape == x.shape and bool((out == 0).all())  # adaLN-Zero and a zero final layer: v = 0 at step 0
    model = _randomise(MMDiT(SMALL), 0.05)
    loss = model(x, t, txt, y_vec).pow(2).mean()
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters()), \
        [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    with torch.no_grad():
        torch.testing.assert_close(model(x, t, txt, y_vec), model(x, t, txt, y_vec), atol=0, rtol=0)
        # every input matters: the time, each text input, and a padding mask when given
        base = model(x, t, txt, y_vec)
        assert not torch.allclose(model(x, t * 0.5, txt, y_vec), base)
        assert not torch.allclose(model(x, t, txt, y_vec + 1), base)
        assert not torch.allclose(model(x, t, torch.randn_like(txt), y_vec), base)
        # text ids are all zero (no rotation), so the order of text tokens is invisible to attention: the text
        # encoder must put word order into the vectors themselves, as T5 does
        torch.testing.assert_close(model(x, t, txt.flip(1), y_vec), base, atol=1e-5, rtol=1e-5)
        mask = torch.tensor([[True, True, True, False, False]] * 2)
        padded = txt.clone()
        padded[:, 3:] = 7.0
        torch.testing.assert_close(model(x, t, padded, y_vec, txt_mask=mask), model(x, t, txt, y_vec, txt_mask=mask))


def test_mmdit_rejects_bad_input_clearly():
    model = MMDiT(SMALL)
    x, t, txt, y_vec = _inputs()
    with pytest.raises(ValueError, match=r"latents \(B, 4, T, H, W\)"):
        model(x[:, :3], t, txt, y_vec)
    with pytest.raises(ValueError, match="divisible by the patch size 2"):
        model(torch.randn(2, 4, 3, 7, 8), t, txt, y_vec)
    with pytest.raises(ValueError, match=r"txt must have shape \(2, L, 8\)"):
        model(x, t, txt[..., :4], y_vec)
    with pytest.raises(ValueError, match=r"y_vec must have shape \(2, 8\)"):
        model(x, t, txt, y_vec[:1])
    with pytest.raises(ValueError, match=r"t must have shape \(2,\)"):
        model(x, t[:1], txt, y_vec)
    with pytest.raises(ValueError, match="must add up to the head dim"):
        MMDiTConfig(hidden_size=32, num_heads=2, axes_dim=(8, 12, 12))


def test_guidance_at_scale_one_is_the_conditional_prediction():
    model = _randomise(MMDiT(SMALL), 0.05).eval()
    x, t, txt, y_vec = _inputs()
    null = {"txt": torch.zeros(5, SMALL.context_in_dim), "y_vec": torch.zeros(SMALL.vec_in_dim)}
    with torch.no_grad():
        cond = model(x, t, txt, y_vec)
        torch.testing.assert_close(ClassifierFreeGuidance(model, 1.0, null)(x, t, txt=txt, y_vec=y_vec), cond)
        uncond = model(x, t, torch.zeros_like(txt), torch.zeros_like(y_vec))
        torch.testing.assert_close(ClassifierFreeGuidance(model, 4.0, null)(x, t, txt=txt, y_vec=y_vec),
                                   uncond + 4.0 * (cond - uncond), atol=1e-5, rtol=1e-5)


def test_repa_targets_follow_the_token_order_of_pack():
    """token_targets puts feature (frame, row, column) where `pack` puts that patch's token."""
    from minidiff.repa import token_targets

    feats = torch.randn(2, 5, 3, 4, 4)
    targets = token_targets(feats, 4, 4)               # same grid: no resampling, only a reorder
    assert targets.shape == (2, 3 * 16, 5)
    ids = prepare_img_ids(2, 3, 8, 8, 2)               # the tokens' (frame, row, column)
    for n in (0, 7, 21, 47):
        f, r, c = ids[0, n].long().tolist()
        torch.testing.assert_close(targets[:, n], feats[:, :, f, r, c])
    assert token_targets(feats, 8, 8).shape == (2, 3 * 64, 5)   # a finer token grid: resized per frame
    with pytest.raises(ValueError, match="B, D, T, h, w"):
        token_targets(feats[0], 4, 4)


def test_repa_loss_is_one_minus_the_mean_cosine():
    from minidiff.repa import repa_loss

    y = torch.randn(2, 6, 4)
    assert float(repa_loss(3 * y, y)) == pytest.approx(0.0, abs=1e-6)     # aligned (any scale)
    assert float(repa_loss(-y, y)) == pytest.approx(2.0, abs=1e-6)
    with pytest.raises(ValueError, match="same shape"):
        repa_loss(y[:, :5], y)


def test_mmdit_repa_projector_reads_the_chosen_block_and_leaves_the_velocity_alone():
    from dataclasses import replace

    cfg = replace(SMALL, depth=2, repa_dim=5, repa_depth=1)
    model = _randomise(MMDiT(cfg)).eval()
    x, t, txt, y = _inputs(cfg=cfg)
    with torch.no_grad():
        plain = model(x, t, txt, y)
        out, projected = model(x, t, txt, y, return_repa=True)
    torch.testing.assert_close(out, plain)                      # the projector never changes the prediction
    assert projected.shape == (2, 3 * 16, 5)
    # it reads the video tokens after block 1: zero block 2 and the projection stays the same
    with torch.no_grad():
        for p in model.double_blocks[1].parameters():
            p.zero_()
        assert torch.allclose(model(x, t, txt, y, return_repa=True)[1], projected)
    with pytest.raises(ValueError, match="no REPA projector"):
        MMDiT(SMALL)(x, t, txt, y, return_repa=True)
    with pytest.raises(ValueError, match="repa_depth 3"):
        replace(SMALL, depth=2, repa_dim=5, repa_depth=3)


def test_i2v_condition_marks_the_known_frames_and_cond_in_starts_at_zero():
    """Open-Sora v2's image condition: cat(mask, mask * reference), 1 + C channels, the known frames first."""
    import dataclasses

    from minidiff.models.mmdit import i2v_condition

    x = torch.randn(2, 4, 3, 8, 8)
    c = i2v_condition(x[:, :, :1], 3)
    assert c.shape == (2, 5, 3, 8, 8)
    assert bool((c[:, 0, 0] == 1).all()) and bool((c[:, 0, 1:] == 0).all())
    assert torch.equal(c[:, 1:, :1], x[:, :, :1]) and bool((c[:, 1:, 1:] == 0).all())
    two = i2v_condition(x[:, :, :2], 3)
    assert bool((two[:, 0, :2] == 1).all()) and torch.equal(two[:, 1:, :2], x[:, :, :2])
    for bad in (lambda: i2v_condition(x[:, :, :1], 0), lambda: i2v_condition(x[:, :, :1, 0], 3),
                lambda: i2v_condition(x, 2)):
        with pytest.raises(ValueError, match="known latent frames"):
            bad()

    cfg = dataclasses.replace(SMALL, cond_embed=True)
    fresh = MMDiT(cfg)
    assert fresh.cond_in.in_features == cfg.in_channels + cfg.patch_size ** 2
    assert bool((fresh.cond_in.weight == 0).all()) and bool((fresh.cond_in.bias == 0).all())
    model = _randomise(MMDiT(cfg), 0.05).eval()
    x, t, txt, y_vec = _inputs()
    cond = i2v_condition(x[:, :, :1], x.shape[2])
    with torch.no_grad():
        base = model(x, t, txt, y_vec)
        torch.testing.assert_close(model(x, t, txt, y_vec, cond=torch.zeros_like(cond)), base)  # None = nothing given
        assert not torch.allclose(model(x, t, txt, y_vec, cond=cond), base, atol=1e-4)
    with pytest.raises(ValueError, match=r"cond must have shape \(2, 5, 3, 8, 8\)"):
        model(x, t, txt, y_vec, cond=cond[:, 1:])
    with pytest.raises(ValueError, match="takes no image condition"):
        MMDiT(SMALL)(x, t, txt, y_vec, cond=cond)


def test_guidance_can_keep_a_condition_in_both_passes():
    """Text guidance for image-to-video: the given first frame goes to the conditional and the unconditional pass."""
    import dataclasses

    from minidiff.models.mmdit import i2v_condition

    model = _randomise(MMDiT(dataclasses.replace(SMALL, cond_embed=True)), 0.05).eval()
    x, t, txt, y_vec = _inputs()
    cond = i2v_condition(x[:, :, :1], x.shape[2])
    null = {"txt": torch.zeros(5, SMALL.context_in_dim), "y_vec": torch.zeros(SMALL.vec_in_dim)}
    with torch.no_grad():
        c = model(x, t, txt, y_vec, cond=cond)
        u = model(x, t, torch.zeros_like(txt), torch.zeros_like(y_vec), cond=cond)
        guided = ClassifierFreeGuidance(model, 3.0, null, keep=("cond",))(x, t, txt=txt, y_vec=y_vec, cond=cond)
    torch.testing.assert_close(guided, u + 3.0 * (c - u), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match=r"no null value for \['cond'\]"):
        ClassifierFreeGuidance(model, 3.0, null)(x, t, txt=txt, y_vec=y_vec, cond=cond)
