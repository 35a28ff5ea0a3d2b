"""``python -m mucode.sandbox``: the ``mucode-exec`` command (``mucode.sandbox.cli``)."""

import sys

from mucode.sandbox.cli import main

sys.exit(main())
