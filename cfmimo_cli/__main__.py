"""``python -m cfmimo_cli`` is the ``cfmimo`` command."""

from .main import main

raise SystemExit(main())
