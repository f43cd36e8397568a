"""``python -m guanai.cli``: the same as the ``guanai`` command."""

import sys

from guanai.cli.main import main

sys.exit(main())
