"""`python -m console`: the `darkpool` command line."""

import sys

from console.cli import main

sys.exit(main())
