"""image-sync: keeps a mirror of container images digest-exact with upstream."""

__all__ = ["__version__"]

__version__ = "0.1.0"
