"""`python -m halo_seg.cli`: what torchrun and the tests start."""
import sys

from . import main

sys.exit(main())
