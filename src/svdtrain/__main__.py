"""``python -m svdtrain``: the command line (what torchrun -m svdtrain runs)."""

import sys

from svdtrain.cli import main

sys.exit(main())
