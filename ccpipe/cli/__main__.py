"""``python -m ccpipe.cli``: the same as the ``ccpipe`` console script."""

import sys

from ccpipe.cli import main

sys.exit(main())
