"""The ``cfmimo`` command line of cfmimo-jax (``cfmimo`` or ``python -m cfmimo_cli``)."""

from .config import ConfigError, load_config, load_default

__all__ = ["ConfigError", "load_config", "load_default"]
