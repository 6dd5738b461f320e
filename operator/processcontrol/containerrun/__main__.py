"""`python -m processcontrol.containerrun`: the same as the `containerrun` command."""

import sys

from processcontrol.containerrun.cli import main

sys.exit(main())
