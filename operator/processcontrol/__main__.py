"""`python -m processcontrol`."""

from processcontrol.cli import main

raise SystemExit(main())
