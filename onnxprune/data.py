"""User data in: feed dicts from ``.npz``/``.npy`` files or any iterable, checked against a model.

One interface, `DataLoader`: ``loader.feeds(model)`` yields feed dicts (graph input name ->
array) ready for ONNX Runtime, each checked by `check_feed` against the model's inputs. The
sources:

- `ArrayLoader`: arrays keyed by graph input name, first axis = samples, from one ``.npz``
  file, a folder of ``.npz`` files (shards, read one at a time) and/or ``.npy`` files (each named
  after its graph input, memory-mapped), or a dict of arrays in memory. An array of the input's
  rank holds samples along the model's dim 0 and is fed `batch` samples at a time; an array of
  one more dim than the input stacks whole feeds, one sample per feed (for inputs without a
  batch dim, such as a scalar sample rate).
- `IterableLoader`: any iterable of feed dicts, fed as they come.
- `onnxprune.runtime.RandomLoader`: random feeds made from the model's inputs.

`open_data` turns a path, a dict of arrays, an iterable or a loader into a loader. Bad data is a
`UsageError` that names the file and the input.

>>> import onnx
>>> m = onnx.parser.parse_model('''<ir_version: 8, opset_import: ["" : 17]>
... g (float[N, 2] x) => (float[N, 2] y) { y = Relu(x) }''')
>>> loader = open_data({"x": np.zeros((5, 2), np.float64)}, batch=2)
>>> [(f["x"].shape, f["x"].dtype.name) for f in loader.feeds(m)]
[((2, 2), 'float32'), ((2, 2), 'float32'), ((1, 2), 'float32')]
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from onnxprune.errors import UsageError
from onnxprune.metrics import graph_inputs, tensor_dims


@dataclass(frozen=True)
class InputSpec:
    """A graph input as a feed must match it: name, numpy dtype (None: not a tensor), dims (None
    for a dynamic dim; None for unknown rank)."""

    name: str
    dtype: np.dtype | None
    dims: tuple[int | None, ...] | None

    def describe(self) -> str:
        shape = (
            "unknown rank"
            if self.dims is None
            else "[" + ", ".join("?" if d is None else str(d) for d in self.dims) + "]"
        )
        return f"{self.dtype.name if self.dtype is not None else 'non-tensor'} {shape}"


def input_specs(model: onnx.ModelProto) -> list[InputSpec]:
    """The specs of the inputs a caller feeds (graph inputs that are not initializers).

    >>> m = onnx.parser.parse_model('''<ir_version: 8, opset_import: ["" : 17]>
    ... g (float[N, 2] x) => (float[N, 2] y) { y = Relu(x) }''')
    >>> input_specs(m)[0].describe()
    'float32 [?, 2]'
    """
    specs = []
    for info in graph_inputs(model):
        dtype = None
        if info.type.HasField("tensor_type") and info.type.tensor_type.elem_type:
            dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(info.type.tensor_type.elem_type))
        dims = tensor_dims(info)
        specs.append(InputSpec(info.name, dtype, None if dims is None else tuple(dims)))
    return specs


def _cast(array: np.ndarray, spec: InputSpec, where: str) -> np.ndarray:
    """`array` in the input's dtype, by the documented policy (see `check_feed`)."""
    src, dst = array.dtype, spec.dtype
    if dst is None or src == dst:
        return array
    refuse = (
        f"{where}: input '{spec.name}' is {src.name}, the model expects {dst.name}; onnxprune converts "
        f"only float to float and integer to integer (values in range): convert it yourself"
    )
    if src.kind == "f" and dst.kind == "f":
        with np.errstate(over="ignore"):
            cast = array.astype(dst)
        if not np.isfinite(cast).all() and np.isfinite(array).all():
            raise UsageError(
                f"{where}: input '{spec.name}' overflows {dst.name} when converted from {src.name}"
            )
        return cast
    if src.kind in "iu" and dst.kind in "iu":
        info = np.iinfo(dst)
        if array.size and (int(array.min()) < info.min or int(array.max()) > info.max):
            raise UsageError(
                f"{where}: input '{spec.name}' has values outside the range of {dst.name} "
                f"[{info.min}, {info.max}] (given as {src.name})"
            )
        return array.astype(dst)
    raise UsageError(refuse)


def check_feed(
    feed: Mapping[str, Any],
    specs: Sequence[InputSpec],
    *,
    where: str,
    files: Mapping[str, str] | None = None,
) -> dict[str, np.ndarray]:
    """`feed` checked against the model's inputs, with dtypes converted; UsageError otherwise.

    Every graph input must be given and nothing else. Each array must have the input's rank and
    its static dims (dynamic dims are free). Dtypes: the input's own dtype as is; float to
    float converted (float64 data for a float32 input is what numpy writes by default; an
    overflow to inf is refused); integer to integer converted when every value fits; anything
    else refused (float data for an integer input, integers or bools for a float input: scaling
    and casting are preprocessing, which is the user's). Messages start with `where` (or the
    input's file in `files`) and name the input.

    >>> spec = InputSpec("x", np.dtype("float32"), (None, 2))
    >>> check_feed({"x": np.zeros((1, 3))}, [spec], where="a.npz")
    Traceback (most recent call last):
    onnxprune.errors.UsageError: a.npz: input 'x' has shape (1, 3), the model expects float32 [?, 2] (dim 1)
    """
    names = {spec.name for spec in specs}
    unknown = sorted(str(k) for k in feed if k not in names)
    if unknown:
        places = sorted({(files or {}).get(k, where) for k in unknown})
        verb = "is not a graph input" if len(unknown) == 1 else "are not graph inputs"
        raise UsageError(f"{', '.join(places)}: {unknown} {verb} of the model (inputs: {sorted(names)})")
    checked = {}
    for spec in specs:
        place = (files or {}).get(spec.name, where)
        if spec.name not in feed:
            raise UsageError(f"{place}: no data for graph input '{spec.name}' ({spec.describe()})")
        array = np.asarray(feed[spec.name])
        if array.dtype == object:
            raise UsageError(f"{place}: input '{spec.name}' is not a numeric array")
        if spec.dims is not None:
            bad = [
                i for i, d in enumerate(spec.dims) if d is not None and i < array.ndim and array.shape[i] != d
            ]
            if array.ndim != len(spec.dims) or bad:
                detail = (
                    f"rank {array.ndim}"
                    if array.ndim != len(spec.dims)
                    else f"dim {', '.join(map(str, bad))}"
                )
                raise UsageError(
                    f"{place}: input '{spec.name}' has shape {array.shape}, the model expects "
                    f"{spec.describe()} ({detail})"
                )
        checked[spec.name] = _cast(array, spec, place)
    return checked


class DataLoader(ABC):
    """Yields feed dicts for a model; subclasses say where they come from (`raw_feeds`).

    `feeds(model)` checks each raw feed with `check_feed` (so every source gets the same checks
    and the same dtype conversions); `source` labels the data in messages and reports.
    """

    source: str

    @abstractmethod
    def raw_feeds(self, model: onnx.ModelProto) -> Iterator[Mapping[str, Any]]:
        """Feed dicts before checking (a loader may check more itself, e.g. sample counts)."""

    def feeds(self, model: onnx.ModelProto) -> Iterator[dict[str, np.ndarray]]:
        """Checked feed dicts for `model`, in order; UsageError at the first bad one."""
        specs = input_specs(model)
        for index, feed in enumerate(self.raw_feeds(model)):
            if not isinstance(feed, Mapping):
                raise UsageError(
                    f"{self.source}: feed {index} is a {type(feed).__name__}, not a dict of arrays"
                )
            files = feed.files if isinstance(feed, _Feed) else None
            yield check_feed(feed, specs, where=f"{self.source} (feed {index})", files=files)


@dataclass(frozen=True)
class IterableLoader(DataLoader):
    """Feed dicts from any iterable, fed as they come; at most `limit` feeds.

    An iterator can be read once: pass a list (or a re-iterable object) to feed it twice.

    >>> m = onnx.parser.parse_model('''<ir_version: 8, opset_import: ["" : 17]>
    ... g (int64[N] x) => (int64[N] y) { y = Neg(x) }''')
    >>> [f["x"].tolist() for f in IterableLoader([{"x": [1, 2]}, {"x": [3]}], limit=1).feeds(m)]
    [[1, 2]]
    """

    items: Iterable[Mapping[str, Any]]
    limit: int | None = None
    source: str = "<feeds>"

    def raw_feeds(self, model: onnx.ModelProto) -> Iterator[Mapping[str, Any]]:
        for index, feed in enumerate(self.items):
            if self.limit is not None and index >= self.limit:
                return
            yield feed


class _Feed(dict):
    """A feed dict that remembers the file each input came from, for messages."""

    files: dict[str, str]


@dataclass(frozen=True)
class _Shard:
    """One unit of array data read at once: a .npz file, the .npy files of a folder, or arrays."""

    label: str
    npz: Path | None = None
    npy: tuple[tuple[str, Path], ...] = ()
    arrays: tuple[tuple[str, np.ndarray], ...] = ()

    def load(self) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        """Arrays by input name and the file each came from; UsageError if a file cannot be read."""
        if self.npz is not None:
            try:
                with np.load(self.npz, allow_pickle=False) as data:
                    arrays = {name: data[name] for name in data.files}
            except Exception as exc:
                raise UsageError(f"{self.npz}: cannot read as .npz ({type(exc).__name__}: {exc})") from exc
            if not arrays:
                raise UsageError(f"{self.npz}: the .npz file holds no arrays")
            return arrays, dict.fromkeys(arrays, str(self.npz))
        if self.npy:
            arrays = {}
            for name, path in self.npy:
                try:
                    arrays[name] = np.load(path, mmap_mode="r", allow_pickle=False)
                except Exception as exc:
                    raise UsageError(f"{path}: cannot read as .npy ({type(exc).__name__}: {exc})") from exc
            return arrays, {name: str(path) for name, path in self.npy}
        return dict(self.arrays), dict.fromkeys(dict(self.arrays), self.label)


@dataclass(frozen=True)
class ArrayLoader(DataLoader):
    """Arrays keyed by graph input name, first axis = samples; at most `limit` samples in all.

    Shards (files) are read one at a time, in order; batches do not span shards. `batch` is
    the number of samples per feed where every input has a dynamic dim 0; a static dim 0 fixes
    it, and inputs given as stacked feeds (rank + 1) make it 1. Use `open_data` to build one.
    """

    shards: tuple[_Shard, ...]
    batch: int = 1
    limit: int | None = None
    source: str = "<arrays>"

    def raw_feeds(self, model: onnx.ModelProto) -> Iterator[Mapping[str, Any]]:
        specs = {spec.name: spec for spec in input_specs(model)}
        left = self.limit
        for shard in self.shards:
            arrays, files = shard.load()
            stacked, count, step = _layout(arrays, files, specs, self.batch, shard.label)
            if left is not None:
                count = min(count, left)
                left -= count
            for start in range(0, count, step):
                stop = min(start + step, count)
                feed = _Feed(
                    {name: (a[start] if stacked[name] else a[start:stop]) for name, a in arrays.items()}
                )
                feed.files = {name: f"{files[name]} (samples {start}-{stop - 1})" for name in arrays}
                yield feed
            if left == 0:
                return


def _layout(
    arrays: Mapping[str, np.ndarray],
    files: Mapping[str, str],
    specs: Mapping[str, InputSpec],
    batch: int,
    label: str,
) -> tuple[dict[str, bool], int, int]:
    """For one shard: which inputs are stacked feeds, the sample count, the samples per feed."""
    for name in arrays:
        if name not in specs:
            raise UsageError(
                f"{files[name]}: array '{name}' is not a graph input of the model (inputs: {sorted(specs)})"
            )
    for name, spec in specs.items():
        if name not in arrays:
            raise UsageError(f"{label}: no data for graph input '{name}' ({spec.describe()})")
    counts, stacked, statics = {}, {}, set()
    for name, array in arrays.items():
        dims = specs[name].dims
        if array.ndim == 0:
            raise UsageError(f"{files[name]}: array '{name}' is a scalar; its first axis must count samples")
        rank = array.ndim if dims is None else len(dims)
        if array.ndim not in (rank, rank + 1):
            raise UsageError(
                f"{files[name]}: input '{name}' has shape {array.shape}, the model expects "
                f"{specs[name].describe()} (rank {rank}, or {rank + 1} with a leading sample axis)"
            )
        stacked[name] = array.ndim == rank + 1
        counts[name] = int(array.shape[0])
        if not stacked[name] and dims and dims[0] is not None:
            statics.add(dims[0])
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"'{n}' {c} ({files[n]})" for n, c in counts.items())
        raise UsageError(f"{label}: inputs have different sample counts: {listed}")
    count = next(iter(counts.values()))
    step = 1 if any(stacked.values()) else (min(statics) if statics else batch)
    if statics and count % step:
        raise UsageError(f"{label}: {count} samples do not fill batches of the model's static dim 0 ({step})")
    return stacked, count, step


DataSource = str | os.PathLike | Mapping[str, np.ndarray] | Iterable[Mapping[str, Any]] | DataLoader


def open_data(source: DataSource, *, batch: int = 1, limit: int | None = None) -> DataLoader:
    """A loader for `source`: a loader (returned as is), a path, a dict of arrays or an iterable.

    A path is one ``.npz`` file, one ``.npy`` file named after its input, or a folder: each
    ``.npz`` in it is a shard holding every input; its ``.npy`` files, one per input named after
    it, together form one shard; other files are ignored. UsageError for a missing path, a folder
    without data files, or a bad `batch` or `limit`.

    >>> open_data("no/such/data.npz")
    Traceback (most recent call last):
    onnxprune.errors.UsageError: no/such/data.npz: no such file or folder
    """
    if isinstance(source, DataLoader):
        return source
    for label, value, low in (("batch", batch, 1), ("limit", limit, 0)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
            raise UsageError(f"{label} must be an integer >= {low}, got {value!r}")
    if isinstance(source, str | os.PathLike):
        return ArrayLoader(_shards(Path(source)), batch=batch, limit=limit, source=os.fspath(source))
    if isinstance(source, Mapping):
        arrays = tuple((str(k), np.asarray(v)) for k, v in source.items())
        return ArrayLoader((_Shard("<arrays>", arrays=arrays),), batch=batch, limit=limit)
    if isinstance(source, Iterable) and not isinstance(source, bytes | bytearray):
        return IterableLoader(source, limit=limit)
    raise UsageError(
        f"cannot read data from a {type(source).__name__}: give a path, a dict of arrays or feed dicts"
    )


def _shards(path: Path) -> tuple[_Shard, ...]:
    if path.is_file():
        if path.suffix == ".npz":
            return (_Shard(str(path), npz=path),)
        if path.suffix == ".npy":
            return (_Shard(str(path), npy=((path.stem, path),)),)
        raise UsageError(f"{path}: not a .npz or .npy file")
    if not path.is_dir():
        raise UsageError(f"{path}: no such file or folder")
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in (".npz", ".npy"))
    if not files:
        raise UsageError(f"{path}: the folder holds no .npz or .npy files")
    shards = [_Shard(str(p), npz=p) for p in files if p.suffix == ".npz"]
    npy = tuple((p.stem, p) for p in files if p.suffix == ".npy")
    if npy:
        shards.append(_Shard(f"{path}{os.sep}*.npy", npy=npy))
    return tuple(shards)
