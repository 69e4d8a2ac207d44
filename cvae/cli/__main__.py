"""`python -m cvae.cli`: the same as the `cvae` command."""

import sys

from cvae.cli.main import main

sys.exit(main())
