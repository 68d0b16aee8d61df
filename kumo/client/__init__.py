"""The Python API client every kumo component and the CLI use."""

from kumo.client.client import (
    ApiException,
    ApplyResult,
    AsyncClient,
    Client,
    ObjectList,
    RawEvent,
    WatchEvent,
)
from kumo.client.config import ClientConfig, ConfigError, KubeConfig

__all__ = [
    "ApiException",
    "ApplyResult",
    "AsyncClient",
    "Client",
    "ClientConfig",
    "ConfigError",
    "KubeConfig",
    "ObjectList",
    "RawEvent",
    "WatchEvent",
]
