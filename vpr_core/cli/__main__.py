"""``python -m vpr_core.cli``: the same as the ``vpr`` command."""

import sys

from .main import main

sys.exit(main())
