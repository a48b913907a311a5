"""Training on several processes with torchrun (gloo, 2 CPU processes): the same engine as one process.

Every run here is a real `python -m torch.distributed.run --standalone --nproc_per_node=2 ...` subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from minidiff import distributed
from minidiff.distributed import rank_seed

WORKER = Path(__file__).with_name("distributed_worker.py")
ROOT = Path(__file__).resolve().parents[1]


def _env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                           "MASTER_PORT")}
    return env | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)} | extra


def torchrun(*args: str, nproc: int = 2, timeout: float = 240, **env: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env(**env), cwd=ROOT)


def single(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, env=_env(),
                          cwd=ROOT)


def _ok(r: subprocess.CompletedProcess) -> None:
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]


def _load(path: Path) -> dict:
    return torch.load(path, weights_only=False)


def test_two_ranks_equal_one_process_on_the_combined_batch(tmp_path):
    """Both ranks see different halves of the global batch, DDP averages their gradients, so after k steps the
    model equals the single-process model trained on the whole batch; one checkpoint is written."""
    two, one, half = tmp_path / "two", tmp_path / "one", tmp_path / "half"
    for d in (two, one, half):
        d.mkdir()
    _ok(torchrun(str(WORKER), "regress", str(two), "5"))
    _ok(single(str(WORKER), "regress", str(one), "5"))
    _ok(single(str(WORKER), "regress", str(half), "5", "4"))  # the control: one process, half the batch
    r0, r1, ref = _load(two / "rank0.pt"), _load(two / "rank1.pt"), _load(one / "rank0.pt")
    assert r0["world_size"] == 2 and ref["world_size"] == 1
    for step in range(5):
        a, b, whole = r0["seen"][step], r1["seen"][step], ref["seen"][step]
        assert a.shape[0] == b.shape[0] == 4 and whole.shape[0] == 8
        assert not torch.equal(a, b), f"both ranks trained on the same data at step {step + 1}"
        torch.testing.assert_close(torch.cat([a, b]), whole, rtol=0, atol=0)
    # Adam divides by sqrt(v): float rounding in the all-reduce (1e-7 after one step) grows in the components whose
    # gradient is near 0, so "equal" means: far closer than the change training made, and than the control
    init, h = _initial_weights(), _load(half / "rank0.pt")
    for k in ref["state"]:
        torch.testing.assert_close(r0["state"][k], r1["state"][k], rtol=0, atol=0)  # the ranks agree exactly
        change = float((ref["state"][k] - init[k]).abs().max())
        assert change > 1e-4, "training did not change the model"
        assert float((r0["state"][k] - ref["state"][k]).abs().max()) < 0.02 * change, k
        assert float((r0["ema"][k] - ref["ema"][k]).abs().max()) < 0.02 * change, k
        assert float((h["state"][k] - ref["state"][k]).abs().max()) > 0.2 * change, "the control is too weak"
    torch.testing.assert_close(torch.tensor(r0["losses"]), torch.tensor(ref["losses"]), rtol=1e-5, atol=1e-7)
    assert sorted(p.name for p in two.iterdir() if p.suffix == ".safetensors" or p.name.startswith(".tmp")) == \
        ["ckpt.safetensors"]
    from minidiff import checkpoint

    tensors, meta = checkpoint.load(str(two / "ckpt.safetensors"))
    assert meta["step"] == 5 and meta["world_size"] == 2 and tensors["rank_rngs"].shape[0] == 2
    torch.testing.assert_close(tensors["model.0.weight"], r0["state"]["0.weight"], rtol=0, atol=0)


def _initial_weights() -> dict:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)).state_dict()


def test_resume_on_two_ranks_is_exact(tmp_path):
    """A 2-process run stopped after 3 steps and resumed to 6 ends with the weights of an uninterrupted 6-step run:
    the checkpoint holds each rank's noise generator."""
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    whole.mkdir(), parts.mkdir()
    _ok(torchrun(str(WORKER), "noisy", str(whole), "6"))
    _ok(torchrun(str(WORKER), "noisy", str(parts), "3"))
    assert len(_load(parts / "rank0.pt")["losses"]) == 3
    _ok(torchrun(str(WORKER), "noisy", str(parts), "6"))
    a, b = _load(whole / "rank0.pt"), _load(parts / "rank0.pt")
    assert len(b["losses"]) == 6
    assert len(b["seen"]) == 3, "the resumed run should have trained only steps 4-6"
    for k in a["state"]:
        torch.testing.assert_close(b["state"][k], a["state"][k], rtol=0, atol=1e-7)
    torch.testing.assert_close(torch.tensor(b["losses"]), torch.tensor(a["losses"]), rtol=0, atol=1e-7)


def test_a_crashed_rank_ends_the_run_with_its_error(tmp_path):
    """Rank 1 raises at its 3rd step: the run ends (a hang would hit the subprocess timeout and fail the test) with
    rank 1's error in torchrun's report, and rank 0 writes no result."""
    r = torchrun(str(WORKER), "crash", str(tmp_path), "8", timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert "rank 1 failed on purpose" in out, out[-3000:]
    assert not (tmp_path / "rank0.pt").exists()


def test_a_hung_rank_times_out_with_a_clear_message(tmp_path):
    """Rank 1 stops answering for 10 minutes; with a 5 s collective timeout rank 0 gives up with a message that says
    what happened and what to do (without the timeout the run would outlive the subprocess timeout)."""
    r = torchrun(str(WORKER), "hang", str(tmp_path), "8", timeout=300, MINIDIFF_DIST_TIMEOUT="5")
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert "another process of this run crashed or stopped answering" in out, out[-3000:]
    assert "a hung process is given up on after 5 s" in out
    assert "MINIDIFF_DIST_TIMEOUT" in out and "ckpt.safetensors" in out


def test_recipes_cli_under_torchrun_writes_the_same_model(tmp_path):
    """`python -m minidiff.recipes` and `torchrun ... -m minidiff.recipes` on a tiny run: the same files, the same
    architecture and recipe, one card saying 2 processes; its checkpoint resumes under torchrun."""
    from minidiff.pretrained import load_pretrained

    one, two = tmp_path / "one", tmp_path / "two"
    _ok(single("-m", "minidiff.recipes", "flow-digits", "--steps", "3", "--device", "cpu", "--out", str(one)))
    ck = str(two / "ck.safetensors")
    r = torchrun("-m", "minidiff.recipes", "flow-digits", "--steps", "3", "--device", "cpu", "--out", str(two),
                 "--checkpoint", ck)
    _ok(r)
    assert r.stdout.count("wrote ") == 1, "only rank 0 may write the model"
    assert sorted(p.name for p in two.iterdir()) == ["ck.safetensors", "flow-digits.json", "flow-digits.safetensors"]
    m1, c1 = load_pretrained("flow-digits", one)
    m2, c2 = load_pretrained("flow-digits", two)
    s1, s2 = m1.state_dict(), m2.state_dict()
    assert s1.keys() == s2.keys() and all(s1[k].shape == s2[k].shape for k in s1)
    assert c1["recipe_config"] == c2["recipe_config"] and c1["train_steps"] == c2["train_steps"] == 3
    assert c2["world_size"] == 2 and "world_size" not in c1
    assert any(not torch.equal(s1[k], s2[k]) for k in s1), "different noise per rank should give other weights"
    r = torchrun("-m", "minidiff.recipes", "flow-digits", "--steps", "5", "--device", "cpu", "--out", str(two),
                 "--checkpoint", ck)
    _ok(r)
    card = json.loads((two / "flow-digits.json").read_text())
    assert card["train_steps"] == 5


def test_recipes_cli_refuses_a_batch_that_does_not_split(tmp_path):
    r = torchrun("-m", "minidiff.recipes", "flow-digits", "--steps", "2", "--batch-size", "7", "--out",
                 str(tmp_path))
    assert r.returncode != 0
    assert "must be divisible by the 2 processes" in r.stderr, r.stderr[-2000:]
    assert not (tmp_path / "flow-digits.safetensors").exists()


# --- the single-process side of the same code -------------------------------------------------------------------

def test_without_torchrun_there_is_one_process(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ctx = distributed.context()
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.distributed) == (0, 1, True, False)
    assert ctx.mean(torch.tensor([2.5, 1.0])) == [2.5, 1.0] and ctx.any(True) and not ctx.any(False)
    assert len(ctx.gather(torch.zeros(3))) == 1


def test_bad_distributed_settings_are_clear(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE='two' is not an integer"):
        distributed.context()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "5")
    with pytest.raises(ValueError, match=r"RANK=5 must lie in \[0, WORLD_SIZE=2\)"):
        distributed.context()
    monkeypatch.delenv("WORLD_SIZE")
    for bad in ("0", "-3", "nan", "inf", "soon"):
        monkeypatch.setenv(distributed.TIMEOUT_ENV, bad)
        with pytest.raises(ValueError, match="MINIDIFF_DIST_TIMEOUT must be a number of seconds > 0"):
            distributed.timeout_seconds()
    monkeypatch.setenv(distributed.TIMEOUT_ENV, "30")
    assert distributed.timeout_seconds() == 30


def test_rank_seeds_differ():
    seeds = {rank_seed(s, r, k) for s in (0, 1) for r in range(4) for k in (0, 500)}
    assert len(seeds) == 16 and all(0 <= v < 2**63 for v in seeds)
    assert rank_seed(0, 0, 0) != 0  # not the shared batch-index generator's seed


def test_recipe_presets_and_devices():
    from minidiff import recipes

    with pytest.raises(ValueError, match="recipe flow-digits has no preset 'gpu'"):
        recipes.settings("flow-digits", "gpu")
    with pytest.raises(ValueError, match="t2v-mmdit has no preset 'huge'"):
        recipes.settings("t2v-mmdit", "huge")
    from minidiff.utils import check_device

    assert check_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="is not a device"):
        check_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="PyTorch sees no CUDA GPU here"):
            check_device("cuda")
    with pytest.raises(ValueError, match="cannot override"):
        recipes.with_overrides(recipes.DIT_DIGITS["train"], None, None, lr=1.0)


def test_gpu_presets_train_on_the_cpu_when_shrunk():
    """The GPU presets' code path, run here for one step with a small batch (no GPU here: see the README)."""
    from minidiff import recipes

    result = recipes.dit_digits(steps=1, progress=False, preset="gpu", batch_size=4, device="cpu").result
    assert result.model.config.hidden_size == recipes.DIT_DIGITS_GPU["dit"].hidden_size == 384
    assert result.step == 1 and torch.isfinite(torch.tensor(result.losses)).all()
    run = recipes.t2v_mmdit(steps=1, image_steps=1, progress=False, preset="gpu", batch_size=4, n_videos=16,
                            evaluate=False, device="cpu")
    result, recipe, fields = run.result, run.card["recipe_config"], run.card
    assert result.model.config.depth_single_blocks == recipes.T2V_MMDIT_GPU["mmdit"].depth_single_blocks == 8
    assert recipe["train"]["batch_size"] == recipe["image_train"]["batch_size"] == 4
    assert fields["stages"]["stills"]["steps"] == fields["stages"]["main"]["steps"] == 1 and result.step == 2


def test_bf16_precision_trains_on_the_cpu():
    from minidiff import recipes

    result = recipes.flow_digits(steps=2, progress=False, bf16=True, batch_size=8).result
    assert result.step == 2 and all(torch.isfinite(torch.tensor(result.losses)))


def test_readme_preset_table_is_the_recipes():
    """The README's preset table states each model's size and batch: they must be the recipes' own."""
    from minidiff import recipes
    from minidiff.models.dit import DiT
    from minidiff.models.mmdit import MMDiT

    readme = (ROOT / "README.md").read_text()
    rows = {(line.split("|")[1].strip(), line.split("|")[2].strip().strip("`")): line.split("|")
            for line in readme.splitlines() if line.startswith("| dit-digits |") or line.startswith("| t2v-mmdit |")}
    models = {("dit-digits", "default"): (DiT(recipes.DIT_DIGITS["dit"]), recipes.DIT_DIGITS),
              ("dit-digits", "gpu"): (DiT(recipes.DIT_DIGITS_GPU["dit"]), recipes.DIT_DIGITS_GPU),
              ("t2v-mmdit", "default"): (MMDiT(recipes.T2V_MMDIT["mmdit"]), recipes.T2V_MMDIT),
              ("t2v-mmdit", "gpu"): (MMDiT(recipes.T2V_MMDIT_GPU["mmdit"]), recipes.T2V_MMDIT_GPU)}
    assert rows.keys() == models.keys()
    for key, (model, r) in models.items():
        cells = rows[key]
        millions = sum(p.numel() for p in model.parameters()) / 1e6
        assert cells[4].strip() == f"{millions:.1f} M", key
        assert cells[5].strip() == f"{r['train'].batch_size:,}", key
        assert f"width {model.config.hidden_size}," in cells[3], key
        if key[0] == "t2v-mmdit":  # a recipe defined by its steps (the minutes only a safety cap)
            assert cells[6].strip().startswith(f"{r['train'].steps:,} steps"), key
        assert ("bf16" in cells[7]) == (r["train"].bf16 is None), key


def test_readme_speedups_are_the_benchmarks():
    """The README's 'what 2 processes buy' table is the latest benchmarks/results/distributed.json, not typed."""
    import importlib.util

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location("bench_distributed", ROOT / "benchmarks" / "distributed.py")
        bench = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(bench)
        table = bench.readme_table(bench.load_records("distributed"))
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    assert "2 processes × 1 thread (torchrun, gloo)" in table
    assert table in (ROOT / "README.md").read_text(), "run python benchmarks/distributed.py --table into the README"


@pytest.mark.parametrize("args, message", [
    (["--steps", "0"], "--steps: must be a whole number >= 1, got '0'"),
    (["--batch-size", "many"], "--batch-size: must be a whole number >= 1, got 'many'"),
    (["--device", "gpu"], "--device 'gpu' is not a device: use cpu, cuda, cuda:N or mps"),
    (["--preset", "gpu"], "recipe flow-digits has no preset 'gpu'"),
    (["--precision", "fp8"], "invalid choice: 'fp8'"),
])
def test_recipes_cli_bad_options(tmp_path, args, message):
    r = single("-m", "minidiff.recipes", "flow-digits", "--out", str(tmp_path), *args, timeout=120)
    assert r.returncode == 2 and message in r.stderr, r.stderr[-2000:]
    assert not (tmp_path / "flow-digits.safetensors").exists()
