"""`python -m noderuntime.cli.main`."""

from noderuntime.cli.main import main

raise SystemExit(main())
