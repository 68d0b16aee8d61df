"""kumo: a self-hosted, serverless-style platform on Podman."""

__version__ = "0.1.0"
