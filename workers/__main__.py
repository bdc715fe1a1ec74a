"""`python -m workers ...`: see workers/cli.py."""
import sys

from workers.cli import main

sys.exit(main())
