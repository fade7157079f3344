"""The runtime layer: every ONNX Runtime session, random feeds, user data and activation statistics.

This is the only module of onnxprune that builds an ``onnxruntime.InferenceSession``. Validation,
benchmarking and calibration all go through it, so they share one configuration (CPU provider,
`threads` intra-op threads, one inter-op thread, all graph optimisations, thread-pool spinning
off so that two sessions side by side do not steal each other's cores).

Data comes in through one interface, `DataLoader`, whatever its source: random feeds made from
the model's inputs (`RandomLoader`), arrays keyed by graph input name from one ``.npz`` file or a
folder of ``.npz``/``.npy`` files (`ArrayLoader`, `open_data`), or any iterable of feed dicts
(`IterableLoader`). Every feed a loader yields is checked against the model's inputs
(`check_feed`); see `check_feed` for the dtype policy. Data files are read one at a time
(``.npy`` memory-mapped), so memory holds one file's arrays and one batch, not the data set.

`run_with_outputs` runs a copy of a model with chosen intermediate tensors exposed as extra
outputs, one batch at a time; `collect_stats` reduces those tensors to `ChannelStats`, sums that
add up across batches and workers.

>>> import onnx
>>> m = onnx.parser.parse_model('''<ir_version: 8, opset_import: ["" : 17]>
... g (float[N, 2] x) => (float[N, 2] y) { h = Relu(x)
...   y = Neg(h) }''')
>>> stats = collect_stats(m, {"h": 1}, RandomLoader(seeds=(0, 1), batch=4))
>>> stats["h"].count, bool((stats["h"].mean >= 0).all())
(8, True)
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort

from onnxprune.data import (
    ArrayLoader,
    DataLoader,
    DataSource,
    InputSpec,
    IterableLoader,
    check_feed,
    input_specs,
    open_data,
)
from onnxprune.errors import ModelError, UsageError
from onnxprune.metrics import check_input_names, concrete_shape, graph_inputs, tensor_dims
from onnxprune.stats import ChannelStats

PROVIDER = "CPUExecutionProvider"
GRAPH_OPTIMIZATION_LEVEL = "ORT_ENABLE_ALL"

# Random integer inputs are drawn from [0, FEED_INT_HIGH): small enough to be valid indices,
# token ids or counts in almost any model.
FEED_INT_HIGH = 4

_FLOAT_FEEDS = {
    onnx.TensorProto.FLOAT: np.float32,
    onnx.TensorProto.FLOAT16: np.float16,
    onnx.TensorProto.DOUBLE: np.float64,
}
_INT_FEEDS = {
    onnx.TensorProto.INT8: np.int8,
    onnx.TensorProto.INT16: np.int16,
    onnx.TensorProto.INT32: np.int32,
    onnx.TensorProto.INT64: np.int64,
    onnx.TensorProto.UINT8: np.uint8,
    onnx.TensorProto.UINT16: np.uint16,
    onnx.TensorProto.UINT32: np.uint32,
    onnx.TensorProto.UINT64: np.uint64,
}


# --- sessions ----------------------------------------------------------------------------------


def session_options(threads: int = 2) -> ort.SessionOptions:
    """The options of every onnxprune session: all optimisations, `threads` intra-op, no spinning.

    >>> session_options(3).intra_op_num_threads
    3
    """
    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, GRAPH_OPTIMIZATION_LEVEL)
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    # Two sessions live side by side (A/B timing, masked vs pruned): with spinning on, the idle
    # one's pool would busy-wait on the cores the running one needs.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


def ort_session(
    model: onnx.ModelProto | bytes | str | os.PathLike,
    threads: int = 2,
    *,
    fallback: onnx.ModelProto | None = None,
) -> ort.InferenceSession:
    """An ONNX Runtime session on the CPU provider with `session_options(threads)`.

    A ModelProto is serialized to bytes in memory, never written to a temporary file; a path is
    handed to ONNX Runtime as a path (it reads external data itself). If loading the path fails
    and `fallback` (the same model in memory) is given and under 2 GB, its bytes are loaded
    instead (ONNX Runtime cannot read some constants from external data).

    >>> m = onnx.parser.parse_model('''<ir_version: 8, opset_import: ["" : 17]>
    ... g (float[2] x) => (float[2] y) { y = Relu(x) }''')
    >>> [o.name for o in ort_session(m).get_outputs()]
    ['y']
    """
    options = session_options(threads)
    if isinstance(model, onnx.ModelProto):
        source: bytes | str = model.SerializeToString()
    elif isinstance(model, bytes | bytearray):
        source = bytes(model)
    else:
        source = os.fspath(model)
    try:
        return ort.InferenceSession(source, options, providers=[PROVIDER])
    except Exception:
        if fallback is None or not isinstance(source, str) or fallback.ByteSize() >= 2**31 - 1:
            raise
    return ort.InferenceSession(fallback.SerializeToString(), options, providers=[PROVIDER])


# --- random feeds ------------------------------------------------------------------------------


def _index_bound(model: onnx.ModelProto, name: str) -> int:
    """Largest valid index + 1 when input `name` indexes constant tables (token type ids into a
    two-row embedding), so random ids stay in range; FEED_INT_HIGH otherwise."""
    tables = {t.name: list(t.dims) for t in model.graph.initializer}
    bound = FEED_INT_HIGH
    for node in model.graph.node:
        if (
            node.op_type == "Gather"
            and len(node.input) > 1
            and node.input[1] == name
            and node.input[0] in tables
        ):
            axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
            dims = tables[node.input[0]]
            if dims:
                bound = min(bound, max(1, dims[axis % len(dims)]))
    return bound


def make_feeds(
    model: onnx.ModelProto,
    *,
    seed: int,
    input_shapes: dict[str, list[int]] | None = None,
    batch: int = 1,
) -> dict[str, np.ndarray]:
    """Random inputs for every graph input of `model`, reproducible from `seed`.

    Float inputs are standard normal in the input's dtype (float32/16/64), integer inputs small
    non-negative integers (below FEED_INT_HIGH), bool inputs ones. A dynamic dim 0 is `batch`;
    any other dynamic dim must be given in `input_shapes` (full shapes by input name) or
    UsageError (a ValueError) names the input and the dim: spatial and sequence sizes are never
    guessed. ModelError if an input is not a tensor of one of those types.

    >>> m = onnx.parser.parse_model('''<ir_version: 8, opset_import: ["" : 17]>
    ... g (float[N, 3, H, W] x) => (float[N, 3, H, W] y) { y = Relu(x) }''')
    >>> make_feeds(m, seed=0, input_shapes={"x": [1, 3, 8, 8]}, batch=2)["x"].shape
    (2, 3, 8, 8)
    """
    check_input_names(model, input_shapes)
    given = input_shapes or {}
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for info in graph_inputs(model):
        name = info.name
        if not info.type.HasField("tensor_type"):
            raise ModelError(f"graph input '{name}' is not a tensor; cannot make a random feed for it")
        shape = concrete_shape(name, tensor_dims(info), given.get(name), batch=batch, dynamic_default=None)
        elem = info.type.tensor_type.elem_type
        if elem in _FLOAT_FEEDS:
            feeds[name] = rng.standard_normal(shape).astype(_FLOAT_FEEDS[elem])
        elif elem in _INT_FEEDS:
            high = min(FEED_INT_HIGH, _index_bound(model, name))
            feeds[name] = rng.integers(0, high, size=shape).astype(_INT_FEEDS[elem])
        elif elem == onnx.TensorProto.BOOL:
            feeds[name] = np.ones(shape, dtype=np.bool_)
        else:
            type_name = onnx.TensorProto.DataType.Name(elem)
            raise ModelError(f"graph input '{name}' has element type {type_name}; cannot make a random feed")
    return feeds


@dataclass(frozen=True)
class RandomLoader(DataLoader):
    """Random feeds from the model's own inputs (`make_feeds`): one per seed, at most `limit` feeds.

    >>> m = onnx.parser.parse_model('''<ir_version: 8, opset_import: ["" : 17]>
    ... g (float[N, 2] x) => (float[N, 2] y) { y = Relu(x) }''')
    >>> [f["x"].shape for f in RandomLoader(seeds=(0, 1), batch=3).feeds(m)]
    [(3, 2), (3, 2)]
    """

    seeds: Sequence[int] = (0, 1, 2)
    batch: int = 1
    input_shapes: Mapping[str, list[int]] | None = None
    limit: int | None = None
    source: str = "random feeds"

    def raw_feeds(self, model: onnx.ModelProto) -> Iterator[dict[str, np.ndarray]]:
        shapes = dict(self.input_shapes) if self.input_shapes else None
        seeds = list(self.seeds) if self.limit is None else list(self.seeds)[: self.limit]
        for seed in seeds:
            yield make_feeds(model, seed=seed, input_shapes=shapes, batch=self.batch)


# --- running with intermediate outputs ---------------------------------------------------------


def expose(model: onnx.ModelProto, tensors: Sequence[str]) -> onnx.ModelProto:
    """A copy of `model` whose graph also outputs `tensors` (the original is not modified).

    Tensors that are already graph outputs are not added twice. UsageError names a tensor that
    no node of the main graph produces and that is not a graph input or initializer.

    >>> m = onnx.parser.parse_model('''<ir_version: 8, opset_import: ["" : 17]>
    ... g (float[2] x) => (float[2] y) { h = Relu(x)
    ...   y = Neg(h) }''')
    >>> [o.name for o in expose(m, ["h"]).graph.output], [o.name for o in m.graph.output]
    (['y', 'h'], ['y'])
    """
    graph = model.graph
    available = {n for node in graph.node for n in node.output} | {i.name for i in graph.input}
    available |= {t.name for t in graph.initializer}
    unknown = [t for t in tensors if t not in available]
    if unknown:
        raise UsageError(f"cannot expose {unknown}: no such tensor in the main graph of the model")
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    present = {o.name for o in copy.graph.output}
    # untyped outputs: ONNX Runtime takes type and shape from the producing node, and no shape
    # inference (slow on big models, and it may fail where ONNX Runtime does not) is needed
    for name in dict.fromkeys(tensors):
        if name not in present:
            copy.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    return copy


def run_with_outputs(
    model: onnx.ModelProto,
    tensors: Sequence[str],
    data: DataSource | DataLoader,
    *,
    threads: int = 2,
) -> Iterator[dict[str, np.ndarray]]:
    """Run `model` on every feed of `data`, yielding `{tensor: value}` for `tensors`, batch by batch.

    The tensors may be graph outputs or intermediate tensors (exposed on a copy of the model;
    `model` is not modified). One batch's values are alive at a time: consume them before the
    next (they are not kept). `data` is anything `open_data` accepts.

    >>> m = onnx.parser.parse_model('''<ir_version: 8, opset_import: ["" : 17]>
    ... g (float[N, 2] x) => (float[N, 2] y) { h = Relu(x)
    ...   y = Neg(h) }''')
    >>> [v["h"].shape for v in run_with_outputs(m, ["h"], [{"x": np.ones((3, 2), np.float32)}])]
    [(3, 2)]
    """
    loader = open_data(data)
    names = list(dict.fromkeys(tensors))
    session = ort_session(expose(model, names), threads)
    for feeds in loader.feeds(model):
        values = session.run(names, feeds)
        yield dict(zip(names, values, strict=True))


def collect_stats(
    model: onnx.ModelProto,
    tensors: Mapping[str, int],
    data: DataSource | DataLoader,
    *,
    gram: Iterable[str] = (),
    threads: int = 2,
) -> dict[str, ChannelStats]:
    """Per-channel statistics of each tensor in `tensors` (name -> channel axis) over all of `data`.

    Streams batch by batch (`run_with_outputs`); memory holds one batch and the sums. Tensors
    named in `gram` also sum the C x C Gram matrix of their channels. The results merge with
    results from other data (`ChannelStats.merge`), so workers can split the samples.

    >>> m = onnx.parser.parse_model('''<ir_version: 8, opset_import: ["" : 17]>
    ... g (float[N, 2] x) => (float[N, 2] y) { y = Relu(x) }''')
    >>> feed = {"x": np.array([[1.0, -2.0], [3.0, 4.0]], np.float32)}
    >>> collect_stats(m, {"y": 1}, [feed])["y"].mean.tolist()
    [2.0, 2.0]
    """
    wanted_gram = set(gram)
    unknown = sorted(wanted_gram - set(tensors))
    if unknown:
        raise UsageError(f"gram names {unknown}, which are not among the tensors collected")
    totals: dict[str, ChannelStats] = {}
    for values in run_with_outputs(model, list(tensors), data, threads=threads):
        for name, value in values.items():
            batch = ChannelStats.of(np.asarray(value), axis=tensors[name], gram=name in wanted_gram)
            totals[name] = totals[name].merge(batch) if name in totals else batch
    missing = [name for name in tensors if name not in totals]
    if missing:
        raise UsageError(f"no samples: the data yielded no feeds, so {missing} have no statistics")
    return totals


__all__ = [
    "FEED_INT_HIGH",
    "GRAPH_OPTIMIZATION_LEVEL",
    "PROVIDER",
    "ArrayLoader",
    "ChannelStats",
    "DataLoader",
    "DataSource",
    "InputSpec",
    "IterableLoader",
    "RandomLoader",
    "check_feed",
    "collect_stats",
    "expose",
    "input_specs",
    "make_feeds",
    "open_data",
    "ort_session",
    "run_with_outputs",
    "session_options",
]


# --- per-node profiles ---------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeProfile:
    """Where one inference's time goes: mean microseconds per run of every kernel ONNX Runtime ran,
    by the name of the node it ran as (fused and layout-converted nodes carry ONNX Runtime's own
    names), and of the whole run."""

    node_us: dict[str, float]
    run_us: float


def profile_nodes(
    model: onnx.ModelProto,
    feeds: Mapping[str, np.ndarray],
    *,
    threads: int = 2,
    runs: int = 20,
    warmup: int = 5,
) -> NodeProfile:
    """Profile `runs` inferences of `model` on `feeds` (after `warmup`) with ONNX Runtime's own
    profiler under `session_options(threads)`: the kernel time of each node, averaged per run.

    >>> m = onnx.parser.parse_model('''<ir_version: 8, opset_import: ["" : 17]>
    ... g (float[4] x) => (float[4] y) { y = Relu(x) }''')
    >>> m.graph.node[0].name = "relu"
    >>> sorted(profile_nodes(m, {"x": np.ones(4, np.float32)}, runs=2, warmup=1).node_us)
    ['relu']
    """
    options = session_options(threads)
    options.enable_profiling = True
    with tempfile.TemporaryDirectory(prefix="onnxprune-profile-") as folder:
        options.profile_file_prefix = os.path.join(folder, "profile")
        session = ort.InferenceSession(model.SerializeToString(), options, providers=[PROVIDER])
        for _ in range(warmup + runs):
            session.run(None, dict(feeds))
        with open(session.end_profiling()) as handle:
            events = json.load(handle)
    timed = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"][-runs:]
    skip = len([e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]) - runs
    node_us: dict[str, float] = {}
    seen_runs = 0
    for event in events:
        if event.get("cat") == "Session" and event.get("name") == "model_run":
            seen_runs += 1
        elif event.get("cat") == "Node" and event["name"].endswith("_kernel_time") and seen_runs >= skip:
            name = event["name"][: -len("_kernel_time")]
            node_us[name] = node_us.get(name, 0.0) + float(event["dur"])
    return NodeProfile(
        {name: us / runs for name, us in node_us.items()},
        float(np.mean([e["dur"] for e in timed])) if timed else 0.0,
    )
