"""python -m minidiff.exercises build|check"""

import sys

from .build import main

sys.exit(main())
