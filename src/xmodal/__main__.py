"""``python -m xmodal ...``: the command line (what torchrun starts: ``torchrun --nproc-per-node N -m xmodal align ...``)."""

import sys

from xmodal.cli.main import main

sys.exit(main())
