"""Read the lines of local JSONL files (optionally gzip) by glob, for tools outside the pipelines."""

from __future__ import annotations

import glob
import gzip
from pathlib import Path


def read_lines(patterns: list[str]) -> list[bytes]:
    """Non-blank lines of every file matching the patterns, files in name order."""
    out = []
    for pattern in patterns:
        for path in sorted(glob.glob(pattern)):
            data = Path(path).read_bytes()
            if path.endswith(".gz"):
                data = gzip.decompress(data)
            out.extend(line for line in data.split(b"\n") if line.strip())
    return out
