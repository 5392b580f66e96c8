"""python -m mammalnet.scan: see mammalnet/scan/cli.py."""

import sys

from mammalnet.scan.cli import main

sys.exit(main())
