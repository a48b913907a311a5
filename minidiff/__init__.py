"""minidiff: from forward noising to a text-to-video MMDiT, small enough for a laptop CPU.

Modules, one concept each (imports run one way, down this list):
  schedules      beta schedules and everything derived from them
  ddpm           the DDPM forward process (q_sample) and, later, its reverse
  data           datasets that ship with installed packages (digits, a photo)
  viz, widgets   plots and interactive widgets for the notebooks
  exercises      exercise checks and the student-notebook builder
"""

from .utils import bf16_is_fast, device, fast_mode, seed_everything

__version__ = "0.1.0"
__all__ = ["bf16_is_fast", "device", "fast_mode", "seed_everything", "__version__"]
