"""image-sync: keeps a mirror of container images digest-exact with upstream."""

import sys

__all__ = ["__version__"]

__version__ = "0.1.0"

# httpx imports its own command-line client on import, which pulls in click and pygments when
# they happen to be installed (click comes with Flask) and then gives up when rich is not:
# 2-3 MiB and a few ms for nothing. A None entry makes that import fail at once; httpx expects
# the failure and carries on without its CLI.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
