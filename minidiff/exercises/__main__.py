"""python -m minidiff.exercises build|check|grade"""

import sys

from .build import main

sys.exit(main())
