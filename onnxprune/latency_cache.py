"""Node latencies measured before, kept on disk so a model is profiled once per setting.

An entry is one node's kernel time in microseconds, keyed by what decides it: ONNX Runtime's
version, the thread count, the op type, its attributes and the shapes of its inputs and outputs
(`node_signature`). Nodes ONNX Runtime fused into another are stored as 0. The file is JSON, in
``$ONNXPRUNE_CACHE_DIR`` (default ``~/.cache/onnxprune``), named by ONNX Runtime version, and
replaced atomically when written. ``ONNXPRUNE_CACHE_DIR=off`` disables it.

>>> cache = LatencyCache.open(threads=2)  # doctest: +SKIP
>>> cache.lookup(["Conv|...", "Relu|..."])  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import onnx
import onnxruntime as ort


def cache_dir() -> Path | None:
    """Where latency caches live (None: caching is off)."""
    configured = os.environ.get("ONNXPRUNE_CACHE_DIR")
    if configured == "off":
        return None
    return Path(configured) if configured else Path.home() / ".cache" / "onnxprune"


def node_signature(node: onnx.NodeProto, shapes: Mapping[str, list[int] | None]) -> str:
    """Op type, a digest of the attributes, and the input and output shapes of `node`."""
    attrs = hashlib.sha256(b"".join(a.SerializeToString() for a in node.attribute)).hexdigest()[:16]

    def dims(names: Sequence[str]) -> str:
        return ";".join("x".join(map(str, shapes.get(n) or ["?"])) if n else "-" for n in names)

    return f"{node.domain}:{node.op_type}|{attrs}|{dims(node.input)}|{dims(node.output)}"


class LatencyCache:
    """Measured node times for one ONNX Runtime version and thread count."""

    def __init__(self, path: Path | None, threads: int, entries: dict[str, float]) -> None:
        self.path = path
        self.prefix = f"t{threads}|"
        self.entries = entries
        self.dirty = False

    @classmethod
    def open(cls, threads: int) -> LatencyCache:
        folder = cache_dir()
        path = None if folder is None else folder / f"latency-ort{ort.__version__}.json"
        entries: dict[str, float] = {}
        if path is not None and path.is_file():
            try:
                entries = {k: float(v) for k, v in json.loads(path.read_text()).items()}
            except (OSError, ValueError):
                entries = {}  # a damaged cache is measured again, never trusted
        return cls(path, threads, entries)

    def lookup(self, keys: Iterable[str]) -> dict[str, float] | None:
        """The time of every key, or None if one was never measured."""
        found = {}
        for key in keys:
            value = self.entries.get(self.prefix + key)
            if value is None:
                return None
            found[key] = value
        return found

    def store(self, values: Mapping[str, float]) -> None:
        self.entries.update((self.prefix + k, float(v)) for k, v in values.items())
        self.dirty = True

    def save(self) -> None:
        """Write the entries (atomically); a cache that cannot be written is left alone."""
        if not self.dirty or self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile("w", dir=self.path.parent, delete=False, suffix=".tmp") as fh:
                json.dump(self.entries, fh)
            os.replace(fh.name, self.path)
            self.dirty = False
        except OSError:
            pass
