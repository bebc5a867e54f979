"""``python -m bear.cli``: the ``bear`` command."""

import sys

from bear.cli.main import main

sys.exit(main())
