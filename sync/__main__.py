"""`python -m sync`: the image-sync command line."""

from sync.cli import main

raise SystemExit(main())
