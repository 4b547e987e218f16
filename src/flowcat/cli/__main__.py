"""``python -m flowcat.cli``."""

import sys

from . import main

sys.exit(main())
