"""Smoke test: ``python -m bench.scale --quick`` runs and prints its table (figures are never asserted)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_scale_benchmark_quick_mode_prints_its_table():
    done = subprocess.run([sys.executable, "-m", "bench.scale", "--quick"], cwd=ROOT, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = re.findall(r"^(trivial|telemetry)\s+(0\.[12])x\s+(\d+)\s+[\d.]+\s+([\d.]+)\s+(\d+)\s+\(main\)\s+\d+$",
                      done.stdout, re.MULTILINE)
    assert sorted((name, size) for name, size, *_ in rows) == [
        ("telemetry", "0.1"), ("telemetry", "0.2"), ("trivial", "0.1"), ("trivial", "0.2")]
    assert all(int(records) > 0 and float(rate) > 0 and int(rss) > 0 for *_, records, rate, rss in rows)
    assert re.search(r"^password hashes/s: [\d.]+ \((argon2id|scrypt) ", done.stdout, re.MULTILINE)
    assert re.search(r"^  telemetry / trivial\s+[\d.]+x\s+target >= 0\.15x\s+(PASS|MISS)$", done.stdout, re.MULTILINE)
    assert "failed:" not in done.stdout
