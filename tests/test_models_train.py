import json
import os

import pytest
import torch

from minidiff import checkpoint
from minidiff.models.layers import timestep_embedding
from minidiff.models.unet import UNet, UNetConfig
from minidiff.train import NonFiniteLoss, TrainConfig, train

SMALL = UNetConfig(image_size=8, in_channels=1, channels=(16, 32), num_classes=10, groups=4)


def test_timestep_embedding_cos_first_and_shape():
    e = timestep_embedding(torch.tensor([0, 10]), 8)
    assert e.shape == (2, 8)
    torch.testing.assert_close(e[0], torch.tensor([1.0] * 4 + [0.0] * 4))
    assert timestep_embedding(torch.tensor([3.0]), 7).shape == (1, 7)


def test_unet_shapes_with_and_without_labels():
    m = UNet(SMALL)
    x, t = torch.randn(3, 1, 8, 8), torch.tensor([0, 5, 999])
    assert m(x, t, torch.tensor([0, 9, 10])).shape == x.shape
    assert m(x, t).shape == x.shape  # no labels -> null class
    u = UNet(UNetConfig(image_size=8, channels=(16, 32), num_classes=None, groups=4))
    assert u(x, t).shape == x.shape


def test_unet_bad_inputs_are_clear():
    m = UNet(SMALL)
    with pytest.raises(ValueError, match=r"expects x of shape \(B, 1, 8, 8\)"):
        m(torch.randn(2, 1, 16, 16), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.9 \(10 = the null label\)"):
        m(torch.randn(2, 1, 8, 8), torch.tensor([1, 2]), torch.tensor([3, 11]))
    with pytest.raises(ValueError, match=r"labels must have shape \(2,\)"):
        m(torch.randn(2, 1, 8, 8), torch.tensor([1, 2]), torch.tensor([3, 1, 2]))
    with pytest.raises(ValueError, match="divisible"):
        UNet(UNetConfig(image_size=10, channels=(8, 8, 8), groups=4))


def _toy(n=64):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g)


def _loss(model, x, y, g):
    t = torch.randint(0, 1000, (x.shape[0],), generator=g)
    return ((model(x, t, y) - x) ** 2).mean()


def test_loss_decreases_on_a_tiny_problem():
    torch.manual_seed(0)
    r = train(UNet(SMALL), _loss, _toy(), TrainConfig(steps=60, batch_size=16, lr=3e-3), progress=False)
    first, last = sum(r.losses[:10]) / 10, sum(r.losses[-10:]) / 10
    assert last < 0.7 * first


def test_kill_and_resume_equals_uninterrupted(tmp_path):
    cfg = dict(batch_size=8, lr=1e-3, ema_decay=0.9)
    torch.manual_seed(0)
    full = train(UNet(SMALL), _loss, _toy(), TrainConfig(steps=12, **cfg), progress=False)
    path = str(tmp_path / "run.safetensors")
    torch.manual_seed(0)
    train(UNet(SMALL), _loss, _toy(), TrainConfig(steps=5, **cfg), checkpoint_path=path, progress=False)
    torch.manual_seed(123)  # a fresh process would start from different weights: resume must overwrite them
    resumed = train(UNet(SMALL), _loss, _toy(), TrainConfig(steps=12, **cfg), checkpoint_path=path, progress=False)
    assert resumed.step == 12 and len(resumed.losses) == 12
    for a, b in zip(full.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(full.ema.parameters(), resumed.ema.parameters(), strict=True):
        assert torch.equal(a, b)
    assert full.losses == resumed.losses


def test_failed_checkpoint_write_leaves_old_file(tmp_path, monkeypatch):
    path = str(tmp_path / "ck.safetensors")
    checkpoint.save_atomic(path, {"w": torch.ones(3)}, {"step": 1})
    import safetensors.torch as st

    def boom(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"half-written")
        raise OSError("disk full")

    monkeypatch.setattr(st, "save_file", boom)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save_atomic(path, {"w": torch.zeros(3)}, {"step": 2})
    tensors, meta = checkpoint.load(path)
    assert torch.equal(tensors["w"], torch.ones(3)) and meta == {"step": 1}
    assert os.listdir(tmp_path) == ["ck.safetensors"]  # no temporary file left behind


def test_corrupt_or_missing_checkpoint_is_clear(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="corrupt"):
        checkpoint.load(str(bad))
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        checkpoint.load(str(tmp_path / "none.safetensors"))


def test_nan_loss_names_the_step():
    calls = {"n": 0}

    def loss(model, x, y, g):
        calls["n"] += 1
        out = _loss(model, x, y, g)
        return out * float("nan") if calls["n"] == 3 else out

    with pytest.raises(NonFiniteLoss, match="at step 3"):
        train(UNet(SMALL), loss, _toy(), TrainConfig(steps=5, batch_size=8), progress=False)


def test_time_budget_stops_early():
    r = train(UNet(SMALL), _loss, _toy(), TrainConfig(steps=10_000, batch_size=8, max_minutes=0.01), progress=False)
    assert r.stopped_by == "time" and 0 < r.step < 10_000


def test_pretrained_roundtrip_and_mismatch(tmp_path):
    from minidiff.pretrained import load_pretrained, save_pretrained, update_card

    m = UNet(SMALL)
    save_pretrained("tiny", m, "unet", {"recipe": "test"}, root=tmp_path)
    update_card("tiny", {"metrics": {"class_accuracy": 0.5}}, root=tmp_path)
    loaded, card = load_pretrained("tiny", root=tmp_path)
    assert card["recipe"] == "test" and card["metrics"] == {"class_accuracy": 0.5}
    for a, b in zip(m.parameters(), loaded.parameters(), strict=True):
        assert torch.equal(a, b)
    cardp = tmp_path / "tiny.json"
    c = json.loads(cardp.read_text())
    c["config"]["channels"] = [16, 64]
    cardp.write_text(json.dumps(c))
    with pytest.raises(ValueError, match="do not match the config"):
        load_pretrained("tiny", root=tmp_path)
    with pytest.raises(FileNotFoundError, match="python -m minidiff.recipes nope"):
        load_pretrained("nope", root=tmp_path)


def test_same_seed_same_samples_with_a_unet():
    from minidiff.ddpm import p_sample_loop
    from minidiff.schedules import make_schedule

    torch.manual_seed(0)
    m = UNet(SMALL).eval()
    torch.nn.init.normal_(m.conv_out.weight, std=0.02)  # a non-trivial network
    s = make_schedule("cosine", 20)
    y = torch.tensor([1, 7])
    a = p_sample_loop(m, s, (2, 1, 8, 8), cond={"y": y}, generator=torch.Generator().manual_seed(5), progress=False)
    b = p_sample_loop(m, s, (2, 1, 8, 8), cond={"y": y}, generator=torch.Generator().manual_seed(5), progress=False)
    c = p_sample_loop(m, s, (2, 1, 8, 8), cond={"y": y}, generator=torch.Generator().manual_seed(6), progress=False)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_shipped_ddpm_loads_and_runs():
    from minidiff.pretrained import load_pretrained

    model, card = load_pretrained("ddpm-digits")
    assert card["recipe"] == "ddpm-digits" and card["train_steps"] > 0
    out = model(torch.randn(3, 1, 16, 16), torch.tensor([0, 500, 999]), torch.tensor([0, 5, 10]))
    assert out.shape == (3, 1, 16, 16) and torch.isfinite(out).all()


def test_interrupt_keeps_the_work_and_resume_rejects_another_model(tmp_path):
    path = str(tmp_path / "run.safetensors")
    calls = {"n": 0}

    def loss(model, x, y, g):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return _loss(model, x, y, g)

    r = train(UNet(SMALL), loss, _toy(), TrainConfig(steps=10, batch_size=8), checkpoint_path=path, progress=False)
    assert r.stopped_by == "interrupted" and r.step == 3
    _, meta = checkpoint.load(path)
    assert meta["step"] == 3
    other = UNet(UNetConfig(image_size=8, channels=(8, 16), num_classes=10, groups=4))
    with pytest.raises(ValueError, match="different model"):
        train(other, _loss, _toy(), TrainConfig(steps=10, batch_size=8), checkpoint_path=path, progress=False)


def test_the_loop_reads_the_loss_back_once_per_log_line(monkeypatch):
    """The loss stays on the device between log lines: the loop reads it back (a device sync) once every log_every
    steps and at the end, not every step, and the history still has every step's loss, in order. (The code before
    issue 28 read it every step: 12 reads here.)"""
    import traceback

    reads = []

    def counting(real):
        def read(self, *a, **k):
            caller = traceback.extract_stack(limit=2)[0].filename
            if caller.endswith((os.path.join("minidiff", "train.py"), os.path.join("minidiff", "distributed.py"))):
                reads.append(self.numel())  # a read made by the loop (Adam's own step counter is not one)
            return real(self, *a, **k)
        return read

    for name in ("tolist", "item", "__float__", "__bool__"):
        monkeypatch.setattr(torch.Tensor, name, counting(getattr(torch.Tensor, name)))
    values = iter(range(1, 100))

    def loss(model, x, y, g):  # a loss whose value says which step it was
        return _loss(model, x, y, g) * 0 + next(values)

    r = train(UNet(SMALL), loss, _toy(), TrainConfig(steps=12, batch_size=8, log_every=5), progress=False)
    assert reads == [5, 5, 2] and r.losses == [float(v) for v in range(1, 13)]
