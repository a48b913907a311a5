"""The open-ended projects (lessons 05 and 08): each check fails on the stub, on junk, on a run that breaks the
budget and on a model below the bar; the grader reports a project's measured score (or "not graded" in fast mode)."""

from __future__ import annotations

import dataclasses

import nbformat
import pytest
import torch

from minidiff import exercises as ex
from minidiff.data import load_digits
from minidiff.exercises import projects
from minidiff.exercises.grade import rows_from_executed, scores
from minidiff.flow import flow_loss_fn
from minidiff.models.dit import DiT, DiTConfig
from minidiff.train import TrainConfig, TrainResult, train

TINY = DiTConfig(image_size=16, in_channels=1, patch_size=4, hidden_size=32, depth=1, num_heads=2, num_classes=10,
                 time_factor=1000.0)


def stub(*args):
    raise NotImplementedError()


def tiny_recipe(images: int, steps: int | None = None) -> TrainResult:
    cfg = TrainConfig(steps=steps or images // 16, batch_size=16, lr=1e-3, bf16=False, seed=0, log_every=5)
    return train(DiT(TINY), flow_loss_fn(10, 0.1), load_digits(16, split="train"), cfg, progress=False)


def test_train_records_the_images_it_saw():
    r = tiny_recipe(0, steps=3)
    assert r.images_seen == 3 * 16


def test_project_dit_fails_on_the_stub_junk_and_a_broken_budget(monkeypatch):
    monkeypatch.setenv("MINIDIFF_FAST", "1")
    with pytest.raises(ex.CheckFailed, match="still the stub"):
        ex.check_project_dit(stub)
    with pytest.raises(ex.CheckFailed, match="should return the TrainResult"):
        ex.check_project_dit(lambda images: DiT(TINY))
    with pytest.raises(ex.CheckFailed, match="over the budget"):
        ex.check_project_dit(lambda images: tiny_recipe(images, steps=images // 16 + 1))
    big = DiTConfig(hidden_size=384, depth=2, num_heads=4)
    with pytest.raises(ex.CheckFailed, match="parameters, over"):
        ex.check_project_dit(lambda images: TrainResult(DiT(big), DiT(big), images_seen=16))
    with pytest.raises(ex.CheckFailed, match="saw no training images"):
        ex.check_project_dit(lambda images: TrainResult(DiT(TINY), DiT(TINY)))


def test_project_dit_in_fast_mode_checks_the_run_but_not_the_bar(monkeypatch, capsys):
    monkeypatch.setenv("MINIDIFF_FAST", "1")
    ex.check_project_dit(tiny_recipe)
    out = capsys.readouterr().out
    assert out.startswith("⏭ project_dit") and "not graded" in out and "✅" not in out


def test_project_dit_fails_below_the_bar(monkeypatch):
    """At the full budget a model that learned almost nothing (10 steps) is graded, and fails with its score."""
    monkeypatch.delenv("MINIDIFF_FAST", raising=False)
    with pytest.raises(ex.CheckFailed, match=r"accuracy 0\.\d+ on 500 samples .* below the bar 0\.\d\d"):
        ex.check_project_dit(lambda images: tiny_recipe(images, steps=10))


def test_project_t2v_fails_on_the_stub_junk_and_over_budget():
    with pytest.raises(ex.CheckFailed, match="still the stub"):
        ex.check_project_fast_t2v(stub)
    with pytest.raises(ex.CheckFailed, match="should return a torch.Tensor"):
        ex.check_project_fast_t2v(lambda pipe, prompts, seed: None)
    with pytest.raises(ex.CheckFailed, match="over the budget of 12"):
        ex.check_project_fast_t2v(lambda pipe, prompts, seed: pipe(prompts, steps=4, seed=seed))


def test_project_t2v_fails_below_the_bar_with_its_score():
    """The pipeline's own sampler with 1 step per pass keeps to the budget (4 evaluations) but misses the bar."""
    with pytest.raises(ex.CheckFailed, match=r"all three right in 0\.[0-5]\d+ of 230 videos .* below the bar"):
        ex.check_project_fast_t2v(lambda pipe, prompts, seed: pipe(prompts, steps=1, seed=seed))


def _cell(source: str, tag: str, outputs: list) -> nbformat.NotebookNode:
    c = nbformat.v4.new_code_cell(source, metadata={"tags": [tag]})
    c.outputs, c.execution_count = outputs, 1
    return c


def test_the_grader_reports_a_projects_score_and_does_not_count_it_in_fast_mode():
    stream = lambda text: nbformat.v4.new_output("stream", name="stdout", text=text)  # noqa: E731
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("def f(): pass"),
                _cell("check_project_dit(f)", "project", [stream("✅ project_dit: accuracy 0.900 ≥ bar 0.68\n")]),
                _cell("check_project_fast_t2v(f)", "project",
                      [stream("⏭ project_fast_t2v: not graded in fast mode\n")]),
                _cell("check_q_sample(f)", "check", [stream("✅ q_sample: ok\n")])]
    rows = rows_from_executed(nb, "ann", "05")
    assert [(r.exercise, r.status) for r in rows] == [("project_dit", "passed"), ("project_fast_t2v", "not graded"),
                                                      ("q_sample", "passed")]
    assert "accuracy 0.900 ≥ bar 0.68" in rows[0].detail and "not graded in fast mode" in rows[1].detail
    assert scores(rows) == {"ann": (2, 2)}
    nb.cells[1].outputs = [nbformat.v4.new_output("error", ename="CheckFailed", traceback=[],
                                                  evalue="project_dit: accuracy 0.610 ... is below the bar 0.68")]
    assert rows_from_executed(nb, "ann", "05")[0].status == "wrong"
    assert dataclasses.asdict(rows[0])["cell"] == 1


def test_evaluate_dit_refuses_bad_input():
    with pytest.raises(ValueError, match="multiple of 10"):
        projects.evaluate_dit(DiT(TINY), n=15)
    with pytest.raises(ValueError, match="torch.nn.Module with parameters"):
        projects.evaluate_dit(torch.nn.Identity())
