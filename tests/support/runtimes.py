"""A runtime built from settings that reach no server (for what it builds without one)."""

from __future__ import annotations

from pipelines.config import Settings
from pipelines.runtime import Runtime


def offline_runtime(tmp_path, key_text: str) -> Runtime:
    key_file = tmp_path / "log.key"
    key_file.write_text(key_text)
    return Runtime(Settings(database_url="postgresql://127.0.0.1:1/x", redis_url="redis://127.0.0.1:1/0", archive=str(tmp_path / "archive"),
                            log_key_file=str(key_file)))
