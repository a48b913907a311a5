"""DiT (patchify, positions, adaLN-Zero), classifier-free guidance and label dropout."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minidiff import flow
from minidiff.guidance import ClassifierFreeGuidance, cfg_combine, drop_labels
from minidiff.models.dit import DiT, DiTBlock, DiTConfig, get_2d_sincos_pos_embed
from minidiff.models.layers import LabelEmbedder, modulate, patchify, unpatchify


@settings(max_examples=60, deadline=None)
@given(b=st.integers(1, 3), c=st.integers(1, 4), gh=st.integers(1, 5), gw=st.integers(1, 5), p=st.integers(1, 4))
def test_patchify_unpatchify_round_trip(b, c, gh, gw, p):
    h, w = gh * p, gw * p
    x = torch.randn(b, c, h, w)
    tokens = patchify(x, p)
    assert tokens.shape == (b, gh * gw, p * p * c)
    assert torch.equal(unpatchify(tokens, p, h, w, c), x)
    tok = torch.randn(b, gh * gw, p * p * c)
    assert torch.equal(patchify(unpatchify(tok, p, h, w, c), p), tok)


def test_patch_tokens_are_the_image_squares_in_raster_order():
    x = torch.arange(2 * 4 * 6, dtype=torch.float32).reshape(1, 2, 4, 6)
    tokens = patchify(x, 2)
    # token 4 = second row of patches, second column: pixels rows 2-3, columns 2-3, flattened (p, p, C)
    want = x[0, :, 2:4, 2:4].permute(1, 2, 0).reshape(-1)
    assert torch.equal(tokens[0, 4], want)


@pytest.mark.parametrize("shape,p", [((1, 1, 16, 16), 3), ((1, 1, 16, 12), 8), ((1, 1, 16, 16), 0)])
def test_patch_size_that_does_not_divide_is_a_clear_error(shape, p):
    with pytest.raises(ValueError, match="patch size|patch_size"):
        patchify(torch.zeros(shape), p)


def test_unpatchify_rejects_wrong_token_shapes():
    with pytest.raises(ValueError, match="expected tokens of shape"):
        unpatchify(torch.zeros(1, 10, 4), 2, 8, 8, 1)
    with pytest.raises(ValueError, match="patch size"):
        DiT(DiTConfig(image_size=16, patch_size=3))


def test_position_embeddings_are_distinct_and_fixed():
    pe = get_2d_sincos_pos_embed(64, 8, 8)
    assert pe.shape == (64, 64)
    assert torch.cdist(pe, pe).add(torch.eye(64) * 1e3).min() > 0.1  # every position has its own code
    assert torch.equal(DiT(DiTConfig()).pos_embed[0], get_2d_sincos_pos_embed(128, 8, 8))
    assert "pos_embed" not in DiT(DiTConfig()).state_dict()  # not learned, not stored
    with pytest.raises(ValueError, match="divisible by 4"):
        get_2d_sincos_pos_embed(6, 2, 2)


def test_fresh_dit_block_is_the_identity():
    torch.manual_seed(0)
    block = DiTBlock(64, 4)
    torch.nn.init.zeros_(block.adaLN_modulation[-1].weight)
    torch.nn.init.zeros_(block.adaLN_modulation[-1].bias)
    x, c = torch.randn(3, 10, 64), torch.randn(3, 64)
    assert torch.equal(block(x, c), x)
    # ... and every block of a freshly built DiT is, because initialize_weights zeroes adaLN
    model = DiT(DiTConfig(hidden_size=64, depth=2))
    for blk in model.blocks:
        assert torch.equal(blk(x, c), x)
    assert torch.equal(model(torch.randn(2, 1, 16, 16), torch.tensor([1.0, 500.0]), torch.tensor([1, 2])),
                       torch.zeros(2, 1, 16, 16))


def test_a_trained_block_is_not_the_identity():
    block = DiTBlock(64, 4)  # default init: modulation not zero
    x, c = torch.randn(3, 10, 64), torch.randn(3, 64)
    assert not torch.allclose(block(x, c), x)


def test_modulate():
    x = torch.randn(2, 5, 4)
    shift, scale = torch.randn(2, 4), torch.randn(2, 4)
    torch.testing.assert_close(modulate(x, shift, scale), x * (1 + scale[:, None]) + shift[:, None])
    assert torch.equal(modulate(x, torch.zeros(2, 4), torch.zeros(2, 4)), x)


def test_dit_shapes_gradients_and_bad_input():
    model = DiT(DiTConfig(hidden_size=64, depth=2, num_heads=4))
    x = torch.randn(3, 1, 16, 16)
    out = model(x, torch.rand(3) * 1000, torch.tensor([0, 9, 10]))
    assert out.shape == x.shape
    loss = flow.flow_loss(model, x, cond={"y": torch.tensor([0, 1, 2])}, generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.9"):
        model(x, torch.zeros(3), torch.tensor([0, 1, 11]))
    with pytest.raises(ValueError, match="labels must lie"):
        model(x, torch.zeros(3), torch.tensor([0, -1, 2]))
    with pytest.raises(ValueError, match="DiT expects x of shape"):
        model(torch.randn(3, 1, 8, 8), torch.zeros(3))
    with pytest.raises(ValueError, match="t must have shape"):
        model(x, torch.zeros(2))
    with pytest.raises(ValueError, match="integer tensor"):
        LabelEmbedder(10, 8)(torch.tensor([1.0]))
    with pytest.raises(ValueError, match=r"labels must have shape \(3,\)"):
        model(x, torch.zeros(3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="unconditional"):
        DiT(DiTConfig(hidden_size=64, depth=1, num_classes=None))(x, torch.zeros(3), torch.zeros(3, dtype=torch.long))


def test_cfg_with_scale_one_is_the_conditional_prediction_and_zero_the_unconditional():
    torch.manual_seed(0)
    model = DiT(DiTConfig(hidden_size=64, depth=2))
    for p in model.parameters():  # leave the zero init so predictions depend on the label
        torch.nn.init.normal_(p, std=0.05)
    x, t, y = torch.randn(4, 1, 16, 16), torch.rand(4) * 1000, torch.tensor([1, 2, 3, 4])
    cond, uncond = model(x, t, y), model(x, t, torch.full_like(y, 10))
    assert not torch.allclose(cond, uncond)
    torch.testing.assert_close(ClassifierFreeGuidance(model, 1.0, {"y": 10})(x, t, y=y), cond)
    torch.testing.assert_close(ClassifierFreeGuidance(model, 0.0, {"y": 10})(x, t, y=y), uncond, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ClassifierFreeGuidance(model, 3.0, {"y": 10})(x, t, y=y), uncond + 3 * (cond - uncond),
                               atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cfg_combine(cond, uncond, 2.5), 2.5 * cond - 1.5 * uncond)


def test_cfg_works_inside_the_samplers_and_rejects_bad_input():
    torch.manual_seed(0)
    model = DiT(DiTConfig(hidden_size=32, depth=1))
    guided = ClassifierFreeGuidance(model, 2.0, null={"y": 10})
    out = flow.euler_sample(guided, (2, 1, 16, 16), steps=2, cond={"y": torch.tensor([3, 4])}, progress=False)
    assert out.shape == (2, 1, 16, 16)
    with pytest.raises(ValueError, match="needs a condition"):
        guided(torch.randn(2, 1, 16, 16), torch.zeros(2))
    with pytest.raises(ValueError, match="guidance scale"):
        ClassifierFreeGuidance(model, -1.0, {"y": 10})
    with pytest.raises(ValueError, match="null must map"):
        ClassifierFreeGuidance(model, 2.0, 10)
    with pytest.raises(ValueError, match=r"no null value for \['txt'\]"):
        guided(torch.randn(2, 1, 16, 16), torch.zeros(2), txt=torch.zeros(2, 3))
    # a tensor null condition (e.g. an empty caption's embedding) is repeated over the batch
    seen = []
    ClassifierFreeGuidance(lambda x, t, txt: (seen.append(txt), x)[1], 2.0, null={"txt": torch.zeros(3)})(
        torch.randn(2, 1), torch.zeros(2), txt=torch.ones(2, 3))
    assert torch.equal(seen[0], torch.cat([torch.ones(2, 3), torch.zeros(2, 3)]))
    with pytest.raises(ValueError, match="null condition for a batch of shape"):
        ClassifierFreeGuidance(lambda x, t, txt: x, 2.0, null={"txt": torch.zeros(4)})(
            torch.randn(2, 1), torch.zeros(2), txt=torch.ones(2, 3))


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5])
def test_label_dropout_rate_is_as_configured(p):
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 10, (20_000,), generator=g)
    out = drop_labels(y, 10, p, g)
    dropped = out == 10
    assert abs(float(dropped.float().mean()) - p) < 0.01
    assert torch.equal(out[~dropped], y[~dropped])
    assert drop_labels(None, 10, 0.5, g) is None


def test_cross_attention_equals_torch_multihead_attention_with_the_same_weights():
    """minidiff's CrossAttention (PixArt's layout: q_linear, kv_linear = [keys; values], proj) against
    torch.nn.MultiheadAttention given the same weights, with a context of another width and length."""
    from minidiff.models.dit import CrossAttention

    torch.manual_seed(0)
    dim, heads, ctx = 32, 4, 24
    ours = CrossAttention(dim, heads, context_dim=ctx)
    ref = torch.nn.MultiheadAttention(dim, heads, kdim=ctx, vdim=ctx, batch_first=True)
    with torch.no_grad():
        ref.q_proj_weight.copy_(ours.q_linear.weight)
        ref.k_proj_weight.copy_(ours.kv_linear.weight[:dim])
        ref.v_proj_weight.copy_(ours.kv_linear.weight[dim:])
        ref.in_proj_bias.copy_(torch.cat([ours.q_linear.bias, ours.kv_linear.bias]))
        ref.out_proj.weight.copy_(ours.proj.weight)
        ref.out_proj.bias.copy_(ours.proj.bias)
        x, c = torch.randn(2, 10, dim), torch.randn(2, 7, ctx)
        assert torch.allclose(ours(x, c), ref(x, c, c, need_weights=False)[0], atol=1e-5)
    with pytest.raises(ValueError, match="context must be"):
        ours(x, torch.randn(2, 7, dim))
    with pytest.raises(ValueError, match="not divisible"):
        CrossAttention(30, 4)
