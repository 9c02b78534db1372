"""The sources file (TOML): which agency systems to pull, how, and how often. Validated at start."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipelines.errors import ConfigError

Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")]


class _Base(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Name
    agency: Name
    interval: float = Field(60.0, gt=0, description="seconds between runs")
    page_size: int = Field(1000, ge=1, le=50_000)
    id_field: str = "id"
    content_field: str | None = None
    sha256_field: str | None = None


class HttpSource(_Base):
    kind: Literal["http"]
    url: str
    cursor_param: str = "cursor"
    limit_param: str | None = "limit"
    items_path: str = "items"
    next_cursor_path: str = "next_cursor"
    auth_header: str | None = None
    auth_secret_env: str | None = Field(None, description="environment variable holding the header's value")
    timeout: float = Field(10.0, gt=0)
    verify_tls: bool = True
    retries: int = Field(4, ge=0, le=10)
    max_page_bytes: int = Field(32 << 20, ge=1024, description="a larger page fails the run cleanly")

    def auth_value(self) -> str | None:
        if not self.auth_secret_env:
            return None
        value = os.environ.get(self.auth_secret_env)
        if value is None:
            raise ConfigError(f"source {self.name}: environment variable {self.auth_secret_env} is not set")
        return value


class S3PrefixSource(_Base):
    kind: Literal["s3"]
    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    format: Literal["jsonl", "csv"] | None = Field(None, description="default: from the key's extension")


class SqlSource(_Base):
    kind: Literal["sql"]
    url: str = Field(description="SQLAlchemy URL; a password may come from url_env instead")
    url_env: str | None = None
    table: str
    cursor_column: str
    tiebreak_column: str
    safety_lag: float = Field(0, ge=0, description="seconds (time cursors) or units (number cursors) behind "
                                                    "the newest value that rows wait before they are read")


class FolderSource(_Base):
    kind: Literal["folder"]
    path: Path
    done_path: Path | None = Field(None, description="default: <path>/done")
    min_age: float = Field(1.0, ge=0, description="seconds a file must be unchanged before it is read")


SourceConfig = Annotated[HttpSource | S3PrefixSource | SqlSource | FolderSource, Field(discriminator="kind")]


class SourcesFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    source: list[SourceConfig] = []


def _where(raw: dict[str, Any], loc: tuple[Any, ...]) -> str:
    """A validation error's place, naming the source by its name (``source "permits".url``) when it has one."""
    if len(loc) >= 2 and loc[0] == "source" and isinstance(loc[1], int):
        entries = raw.get("source")
        entry = entries[loc[1]] if isinstance(entries, list) and loc[1] < len(entries) else None
        name = entry.get("name") if isinstance(entry, dict) else None
        kind = entry.get("kind") if isinstance(entry, dict) else None
        rest = [str(p) for p in loc[2:] if str(p) != kind]  # (the kind's own tag in a discriminated union)
        label = f'source "{name}"' if isinstance(name, str) else f"source #{loc[1] + 1}"
        return ".".join([label, *rest])
    return ".".join(str(p) for p in loc)


def load_sources(path: str | os.PathLike[str]) -> dict[str, SourceConfig]:
    """Read and validate the sources file; ConfigError names the file, the source and the field."""
    try:
        raw = tomllib.loads(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read sources file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"sources file {path} is not TOML: {exc}") from exc
    try:
        parsed = SourcesFile.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{_where(raw, e['loc'])}: {e['msg']}" for e in exc.errors()[:10])
        raise ConfigError(f"sources file {path}: {problems}") from None
    names = [s.name for s in parsed.source]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"sources file {path}: duplicate source names {duplicates}")
    return {s.name: s for s in parsed.source}
