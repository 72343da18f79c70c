"""One settings object, filled from ``OPENSPHERE_*`` environment variables and CLI flags."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path


def _default_data_dir() -> Path:
    return Path(os.environ.get("OPENSPHERE_DATA_DIR", "~/.opensphere")).expanduser()


@dataclass(frozen=True)
class Settings:
    """Everything a server process needs to know; CLI flags override the environment."""

    data_dir: Path = field(default_factory=_default_data_dir)
    host: str = "127.0.0.1"
    grpc_port: int = 50051
    rest_port: int = 8080
    database_url: str = ""
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # Kernels kept started so that a notebook's first run does not wait for one.
    kernel_pool_size: int = 2
    # Storage size of a project whose size was never set with ResizeDisk.
    default_disk_size_gb: int = 20
    # OpenID Connect: accept provider-signed bearer JWTs when all three are set.
    oidc_jwks_file: Path | None = None
    oidc_issuer: str = ""
    oidc_audience: str = ""

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Read ``OPENSPHERE_<FIELD>`` for every field, then apply non-None overrides."""
        base = cls()
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = os.environ.get(f"OPENSPHERE_{f.name.upper()}")
            if raw is not None and f.name != "data_dir":
                values[f.name] = _coerce(getattr(base, f.name), f.name, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "data_dir" in values:
            values["data_dir"] = Path(str(values["data_dir"])).expanduser()
        return replace(base, **values)

    @property
    def effective_database_url(self) -> str:
        """The configured URL, or the SQLite file in the data folder."""
        return self.database_url or f"sqlite:///{self.data_dir / 'opensphere.db'}"

    @property
    def oidc(self) -> bool:
        return bool(self.oidc_jwks_file and self.oidc_issuer and self.oidc_audience)

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None and self.tls_key is not None


def _coerce(default: object, name: str, raw: str) -> object:
    if isinstance(default, int):
        return int(raw)
    if name in ("tls_cert", "tls_key", "oidc_jwks_file"):
        return Path(raw) if raw else None
    return raw
