"""What the benchmark scripts record about the machine and the code they ran on.

Imported by the scripts beside it (run as ``python benchmarks/<script>.py``, so this folder is
on the path).

>>> cpu_model()  # doctest: +SKIP
'AMD EPYC 7B13'
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _proc_field(path: str, key: str) -> str | None:
    """The value after `key:` on the first matching line of a /proc file (None if absent)."""
    try:
        for line in Path(path).read_text().splitlines():
            name, _, value = line.partition(":")
            if name.strip() == key:
                return value.strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    """The CPU's model name."""
    return _proc_field("/proc/cpuinfo", "model name") or platform.processor() or "unknown CPU"


def cpu_flags() -> set[str]:
    """The CPU's feature flags (avx2, avx512f, ...); empty where /proc/cpuinfo is missing."""
    return set((_proc_field("/proc/cpuinfo", "flags") or "").split())


def ram_gib() -> float | None:
    """Total memory in GiB."""
    total = _proc_field("/proc/meminfo", "MemTotal")
    return int(total.split()[0]) / 2**20 if total else None


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages, rounded."""
    return [round(x, 2) for x in os.getloadavg()]


def git_state() -> str:
    """The repository's HEAD commit, with "+ local changes" when the work tree differs from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=HERE,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head} + local changes" if dirty else head
