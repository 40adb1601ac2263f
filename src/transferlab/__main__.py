"""``python -m transferlab`` (and ``torchrun -m transferlab train ...``)."""
import sys

from .cli import main

sys.exit(main())
