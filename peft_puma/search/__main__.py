"""``python -m peft_puma.search``: see :mod:`peft_puma.search.cli` and docs/search.md."""

import sys

from .cli import main

sys.exit(main())
