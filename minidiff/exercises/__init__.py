"""Exercise checks, one module per lesson, and the builder of the student notebooks.

Checks: each `check_*` calls the learner's function on fixed inputs and compares it with the package's reference.
On a wrong answer it raises `CheckFailed` (an AssertionError) saying what went in, what was expected, what came back
and a hint; on a right one it prints a single deterministic line starting with ✅. The notebooks import them from
here: `from minidiff.exercises import check_q_sample`.

Student notebooks (`build.py`; the command line in `__main__.py`, the notebook runner in `runner.py`):
`python -m minidiff.exercises build` copies every lesson notebooks/NN_*.ipynb to notebooks/exercises/, replacing
each region between `### BEGIN SOLUTION` and `### END SOLUTION` with `raise NotImplementedError()` and clearing all
outputs. `python -m minidiff.exercises check` exits 1 when the
committed student notebooks are out of date.
"""

from ._common import CheckFailed
from .build import (
    BEGIN,
    END,
    STUB,
    build,
    build_student_notebook,
    lesson_notebooks,
    strip_solutions,
    student_text,
)
from .lesson01 import (
    check_closed_form_coefficients,
    check_cosine_schedule,
    check_forward_step,
    check_linear_schedule,
    check_q_sample,
)
from .lesson02 import check_ancestral_step, check_ddpm_loss, check_posterior, check_predict_x0, check_sample_loop
from .lesson03 import check_clipped_eps, check_ddim_step, check_ddim_timesteps, check_invert, check_slerp
from .lesson04 import (
    check_estimates_from_velocity,
    check_euler_sampler,
    check_heun_sampler,
    check_time_shift,
    check_velocity_loss,
)
from .lesson05 import (
    check_attention,
    check_cfg_combine,
    check_cross_attention,
    check_dit_block,
    check_modulate,
    check_multi_head_attention,
    check_patchify,
    check_unpatchify,
)
from .lesson06 import check_causal_conv3d, check_causal_pad, check_kl_divergence, check_reparameterize
from .lesson07 import check_clip_loss, check_clip_training_step, check_pool_at_eos, check_prompt_to_ids
from .lesson08 import (
    check_apply_rope,
    check_double_stream_block,
    check_guided_euler_step,
    check_i2v_condition,
    check_joint_attention,
    check_modulated_residual,
    check_pack,
    check_prepare_img_ids,
    check_single_stream_block,
)
from .lesson09 import check_distillation_target, check_lora_forward, check_put_back, check_sdedit
from .projects import check_project_dit, check_project_fast_t2v
from .runner import execute_notebook

__all__ = [
    "CheckFailed",
    "BEGIN",
    "END",
    "STUB",
    "build",
    "build_student_notebook",
    "execute_notebook",
    "lesson_notebooks",
    "strip_solutions",
    "student_text",
    "check_forward_step",
    "check_linear_schedule",
    "check_cosine_schedule",
    "check_closed_form_coefficients",
    "check_q_sample",
    "check_posterior",
    "check_ddpm_loss",
    "check_ancestral_step",
    "check_predict_x0",
    "check_sample_loop",
    "check_ddim_step",
    "check_clipped_eps",
    "check_ddim_timesteps",
    "check_slerp",
    "check_invert",
    "check_velocity_loss",
    "check_euler_sampler",
    "check_heun_sampler",
    "check_estimates_from_velocity",
    "check_time_shift",
    "check_patchify",
    "check_unpatchify",
    "check_modulate",
    "check_multi_head_attention",
    "check_attention",
    "check_cfg_combine",
    "check_cross_attention",
    "check_dit_block",
    "check_reparameterize",
    "check_kl_divergence",
    "check_causal_pad",
    "check_causal_conv3d",
    "check_prompt_to_ids",
    "check_pool_at_eos",
    "check_clip_loss",
    "check_clip_training_step",
    "check_pack",
    "check_prepare_img_ids",
    "check_single_stream_block",
    "check_apply_rope",
    "check_modulated_residual",
    "check_joint_attention",
    "check_guided_euler_step",
    "check_i2v_condition",
    "check_double_stream_block",
    "check_distillation_target",
    "check_sdedit",
    "check_put_back",
    "check_lora_forward",
    "check_project_dit",
    "check_project_fast_t2v",
]
