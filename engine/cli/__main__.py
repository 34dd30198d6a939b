"""python -m engine.cli: the `mespot` command."""

import sys

from engine.cli import main

sys.exit(main())
