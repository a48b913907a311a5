"""LoRA (minidiff.lora): zero B is the base model, only A and B train, merging changes nothing."""

import pytest
import torch

from minidiff.lora import LoRALinear, add_lora, merge_lora
from minidiff.models.mmdit import MMDiT, MMDiTConfig

CFG = MMDiTConfig(in_channels=16, patch_size=2, vec_in_dim=8, context_in_dim=8, hidden_size=32, num_heads=2, depth=1,
                  depth_single_blocks=1, axes_dim=(4, 6, 6))


def _inputs():
    g = torch.Generator().manual_seed(0)
    return (torch.randn(2, 4, 3, 4, 4, generator=g), torch.rand(2, generator=g), torch.randn(2, 5, 8, generator=g),
            torch.randn(2, 8, generator=g))


def _model():
    torch.manual_seed(0)
    m = MMDiT(CFG).eval()
    for p in m.parameters():  # zero-initialised modulations and output layer: make the base model do something
        p.data += 0.02 * torch.randn_like(p)
    return m


def test_lora_with_zero_B_is_the_base_model_and_only_A_and_B_train():
    base = _model()
    want = base(*_inputs())
    names = add_lora(base, rank=4, targets=("qkv", "proj"))
    assert names == ["double_blocks.0.img_attn.qkv", "double_blocks.0.img_attn.proj", "double_blocks.0.txt_attn.qkv",
                     "double_blocks.0.txt_attn.proj"]
    assert torch.equal(base(*_inputs()), want)
    trainable = [n for n, p in base.named_parameters() if p.requires_grad]
    assert len(trainable) == 2 * len(names) and all(n.endswith(("lora_A", "lora_B")) for n in trainable)
    n_lora = sum(p.numel() for p in base.parameters() if p.requires_grad)
    assert n_lora == sum(4 * (m.base.in_features + m.base.out_features) for m in base.modules()
                         if isinstance(m, LoRALinear))


def test_merging_the_trained_update_gives_the_same_outputs():
    m = _model()
    add_lora(m, rank=2, targets=("qkv",), alpha=4.0)
    for mod in m.modules():
        if isinstance(mod, LoRALinear):
            mod.lora_B.data.normal_(0, 0.1)  # as if trained
    adapted = m(*_inputs())
    assert not torch.allclose(adapted, _model()(*_inputs()))
    merged = merge_lora(m)
    assert not any(isinstance(mod, LoRALinear) for mod in merged.modules())
    assert torch.allclose(merged(*_inputs()), adapted, atol=1e-5)


def test_lora_refuses_bad_settings_clearly():
    with pytest.raises(ValueError, match=r"no nn.Linear named \['attn'\].*named \[.*'qkv'"):
        add_lora(_model(), rank=2, targets=("attn",))
    with pytest.raises(ValueError, match="rank must be an integer in 1..32"):
        add_lora(_model(), rank=0, targets=("proj",))
    with pytest.raises(ValueError, match="wraps an nn.Linear"):
        LoRALinear(torch.nn.Conv2d(2, 2, 1), rank=1)
    assert add_lora(_model(), rank=1, targets="qkv") == add_lora(_model(), rank=1, targets=("qkv",))
