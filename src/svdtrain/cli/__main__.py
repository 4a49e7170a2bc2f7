import sys

from svdtrain.cli import main

sys.exit(main())
