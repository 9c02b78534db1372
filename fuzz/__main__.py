"""``python -m fuzz TARGET [SECONDS]``: run one atheris target for SECONDS (default 600), its corpus kept in
fuzz/corpus/TARGET (seeded from tests/data), crashes written to fuzz/crashes/TARGET."""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

HERE = Path(__file__).resolve().parent


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else ""
    seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 600
    with atheris.instrument_imports(include=["pipelines"]):
        from fuzz.targets import TARGETS, seeds
    if name not in TARGETS:
        sys.exit(f"usage: python -m fuzz TARGET [SECONDS]; targets: {', '.join(TARGETS)}")
    corpus, crashes = HERE / "corpus" / name, HERE / "crashes" / name
    corpus.mkdir(parents=True, exist_ok=True)
    crashes.mkdir(parents=True, exist_ok=True)
    for i, seed in enumerate(seeds(name)):
        (corpus / f"seed-{i}").write_bytes(seed)
    target = TARGETS[name]()
    print(f"fuzzing {name} for {seconds} s; corpus {corpus}, crashes in {crashes}", file=sys.stderr)
    atheris.Setup([sys.argv[0], f"-max_total_time={seconds}", "-timeout=10", "-rss_limit_mb=2048",
                   f"-artifact_prefix={crashes}/", "-print_final_stats=1", str(corpus)], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
