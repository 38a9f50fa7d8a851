"""Provider profiles: one module per upstream API, chosen from the base URL or `IORAG_PROVIDER`.

    base.py    Provider: what differs between upstreams
    ionet.py   IO Intelligence (the default)
    iio.py     the IIO AI Platform
"""

from __future__ import annotations

from urllib.parse import urlsplit

from ...errors import ConfigError
from .base import Meaning, Provider
from .iio import IIO
from .ionet import IONET

PROVIDERS: dict[str, Provider] = {p.name: p for p in (IONET, IIO)}


def provider_for(base_url: str, name: str | None = None) -> Provider:
    """The profile named `name`, else the one whose host the base URL names, else IO Intelligence.

    Raises:
        ConfigError: an unknown provider name.
    """
    if name:
        try:
            return PROVIDERS[name.strip().lower()]
        except KeyError:
            known = ", ".join(sorted(PROVIDERS))
            raise ConfigError(f"unknown provider {name!r}", hint=f"IORAG_PROVIDER takes one of: {known}") from None
    host = (urlsplit(base_url).hostname or "").lower()
    for provider in PROVIDERS.values():
        if host in provider.hosts:
            return provider
    return IONET


__all__ = ["IIO", "IONET", "Meaning", "PROVIDERS", "Provider", "provider_for"]
