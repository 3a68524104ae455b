"""image-sync: keeps a mirror of container images digest-exact with upstream."""

import sys
import types

__all__ = ["__version__"]

__version__ = "0.1.0"

# httpx imports its own command-line client on import, which pulls in click and pygments when
# they happen to be installed (click comes with Flask) and then gives up when rich is not:
# 2-3 MiB and a few ms for nothing. A None entry makes that import fail at once; httpx expects
# the failure and carries on without its CLI.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

# pydantic looks for plugins (the `pydantic` entry point group) the first time it builds a
# model: its loader imports importlib.metadata (and with it email, zipfile, csv) and reads the
# metadata of every installed distribution, about 0.7 MiB and 20 ms for nothing: image-sync
# uses no pydantic plugin. A loader that finds none stands in for it (what pydantic itself
# does with PYDANTIC_DISABLE_PLUGINS set, without the import).
if "pydantic.plugin._loader" not in sys.modules:
    _no_plugins = types.ModuleType("pydantic.plugin._loader")
    _no_plugins.get_plugins = lambda: ()  # type: ignore[attr-defined]
    sys.modules["pydantic.plugin._loader"] = _no_plugins
