"""OpenSphere: a self-hosted ML notebook platform that speaks the DataSphere API v2."""

__version__ = "0.1.0"
