"""The runtime layer: sessions, data loaders and their errors, exposed tensors, channel statistics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from onnxprune.data import ArrayLoader, IterableLoader, input_specs, open_data
from onnxprune.errors import UsageError
from onnxprune.runtime import (
    RandomLoader,
    collect_stats,
    expose,
    ort_session,
    run_with_outputs,
    session_options,
)
from onnxprune.stats import ChannelStats

ROOT = Path(__file__).resolve().parents[1]
HEADER = '<ir_version: 8, opset_import: ["" : 17]>\n'

# x: a batch of 3-channel images with free spatial dims; ids: int64 tokens; h is internal.
TWO_INPUTS = """g (float[N, 3, H, W] x, int64[N, 4] ids) => (float[N, 3, H, W] y, int64[N, 4] z) {
    h = Relu(x)
    y = Neg(h)
    z = Identity(ids) }"""


def model(text: str = TWO_INPUTS) -> onnx.ModelProto:
    m = onnx.parser.parse_model(HEADER + text)
    onnx.checker.check_model(m, full_check=True)
    return m


def samples(n: int = 5, hw: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "x": rng.standard_normal((n, 3, hw, hw)).astype(np.float32),
        "ids": rng.integers(0, 9, size=(n, 4)).astype(np.int64),
    }


# --- one place builds sessions -----------------------------------------------------------------


def test_only_runtime_builds_inference_sessions() -> None:
    found = []
    for folder in ("onnxprune", "passes"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if "InferenceSession(" in line:
                    found.append(f"{path.relative_to(ROOT)}:{number}")
    assert found, "the grep found nothing: the test would pass vacuously"
    assert {f.split(":")[0] for f in found} == {"onnxprune/runtime.py"}, found


def test_session_options_turn_spinning_off_and_set_threads() -> None:
    options = session_options(3)
    assert options.intra_op_num_threads == 3 and options.inter_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL


def test_ort_session_from_path_bytes_and_proto(tmp_path: Path) -> None:
    m = model()
    onnx.save(m, tmp_path / "m.onnx")
    for source in (m, m.SerializeToString(), tmp_path / "m.onnx", str(tmp_path / "m.onnx")):
        assert [o.name for o in ort_session(source).get_outputs()] == ["y", "z"]


def test_ort_session_falls_back_to_the_model_in_memory(tmp_path: Path) -> None:
    (tmp_path / "broken.onnx").write_bytes(b"not a model")
    session = ort_session(tmp_path / "broken.onnx", fallback=model())
    assert [o.name for o in session.get_outputs()] == ["y", "z"]
    with pytest.raises(Exception, match=r"broken\.onnx|Protobuf|parse"):
        ort_session(tmp_path / "broken.onnx")


# --- loaders -----------------------------------------------------------------------------------


def test_npz_file_is_fed_in_batches_with_safe_casts(tmp_path: Path) -> None:
    data = samples(5)
    np.savez(tmp_path / "d.npz", x=data["x"].astype(np.float64), ids=data["ids"].astype(np.int32))
    feeds = list(open_data(tmp_path / "d.npz", batch=2).feeds(model()))
    assert [f["x"].shape[0] for f in feeds] == [2, 2, 1]
    assert all(f["x"].dtype == np.float32 and f["ids"].dtype == np.int64 for f in feeds)
    np.testing.assert_array_equal(np.concatenate([f["x"] for f in feeds]), data["x"])
    np.testing.assert_array_equal(np.concatenate([f["ids"] for f in feeds]), data["ids"])


def test_limit_counts_samples_across_shards(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    np.savez(folder / "a.npz", **samples(3, seed=1))
    np.savez(folder / "b.npz", **samples(3, seed=2))
    feeds = list(open_data(folder, batch=2, limit=4).feeds(model()))
    assert [f["x"].shape[0] for f in feeds] == [2, 1, 1]  # batches do not span shards
    np.testing.assert_array_equal(feeds[2]["x"], samples(3, seed=2)["x"][:1])


def test_folder_of_npy_files_named_after_inputs_is_memory_mapped(tmp_path: Path) -> None:
    data = samples(4)
    for name, array in data.items():
        np.save(tmp_path / f"{name}.npy", array)
    (tmp_path / "README.txt").write_text("ignored")
    loader = open_data(tmp_path, batch=4)
    assert isinstance(loader, ArrayLoader)
    arrays, _ = loader.shards[0].load()
    assert isinstance(arrays["x"], np.memmap)
    (feed,) = loader.feeds(model())
    np.testing.assert_array_equal(feed["x"], data["x"])
    stats = collect_stats(model(), {"h": 1}, loader)  # memory-mapped slices run in ONNX Runtime
    np.testing.assert_allclose(stats["h"].sum, np.maximum(data["x"], 0).sum(axis=(0, 2, 3)), rtol=1e-6)


def test_symbolic_dims_are_free_between_shards(tmp_path: Path) -> None:
    np.savez(tmp_path / "a.npz", **samples(2, hw=4))
    np.savez(tmp_path / "b.npz", **samples(2, hw=7))
    outs = list(run_with_outputs(model(), ["h"], tmp_path))
    assert [o["h"].shape for o in outs] == [(1, 3, 4, 4), (1, 3, 4, 4), (1, 3, 7, 7), (1, 3, 7, 7)]


def test_stacked_feeds_for_inputs_without_a_batch_dim(tmp_path: Path) -> None:
    m = model("g (float[3] v, float[N, 3] x) => (float[N, 3] y) { y = Add(x, v) }")
    data = {"v": np.arange(6, dtype=np.float32).reshape(2, 3), "x": np.zeros((2, 3), np.float32)}
    feeds = list(open_data(data, batch=8).feeds(m))
    assert [(f["v"].shape, f["x"].shape) for f in feeds] == [((3,), (1, 3)), ((3,), (1, 3))]
    assert feeds[1]["v"].tolist() == [3.0, 4.0, 5.0]


def test_static_batch_dim_sets_the_batch() -> None:
    m = model("g (float[1, 3] x) => (float[1, 3] y) { y = Relu(x) }")
    feeds = list(open_data({"x": np.ones((3, 3), np.float32)}, batch=8).feeds(m))
    assert [f["x"].shape for f in feeds] == [(1, 3)] * 3


def test_iterable_of_feed_dicts_and_random_loader() -> None:
    m = model()
    items = [samples(2, seed=s) for s in range(3)]
    assert len(list(IterableLoader(items, limit=2).feeds(m))) == 2
    assert len(list(open_data(iter(items)).feeds(m))) == 3
    random = list(RandomLoader(seeds=(0, 1), batch=3, input_shapes={"x": [3, 3, 5, 5]}).feeds(m))
    assert [f["x"].shape for f in random] == [(3, 3, 5, 5)] * 2
    assert not np.array_equal(random[0]["x"], random[1]["x"])
    limited = RandomLoader(seeds=(0, 1, 2), input_shapes={"x": [1, 3, 2, 2]}, limit=1)
    assert len(list(limited.feeds(m))) == 1


def write_npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


BAD_DATA = [
    # (what, how to make the source in tmp_path, pattern the message must match)
    (
        "unknown input",
        lambda p: write_npz(p / "d.npz", **samples(2), mask=np.ones((2, 4))),
        r"d\.npz: array 'mask' is not a graph input .*inputs: \['ids', 'x'\]",
    ),
    (
        "missing input",
        lambda p: write_npz(p / "d.npz", x=samples(2)["x"]),
        r"d\.npz: no data for graph input 'ids' \(int64 \[\?, 4\]\)",
    ),
    (
        "wrong rank",
        lambda p: write_npz(p / "d.npz", x=np.zeros((2, 3, 4), np.float32), ids=samples(2)["ids"]),
        r"d\.npz: input 'x' has shape \(2, 3, 4\), the model expects float32 \[\?, 3, \?, \?\]",
    ),
    (
        "wrong static dim",
        lambda p: write_npz(p / "d.npz", x=np.zeros((2, 5, 4, 4), np.float32), ids=samples(2)["ids"]),
        r"d\.npz \(samples 0-0\): input 'x' has shape \(1, 5, 4, 4\).*\(dim 1\)",
    ),
    (
        "float for an integer input",
        lambda p: write_npz(p / "d.npz", x=samples(2)["x"], ids=np.zeros((2, 4), np.float32)),
        r"d\.npz \(samples 0-0\): input 'ids' is float32, the model expects int64.*convert it yourself",
    ),
    (
        "integers for a float input",
        lambda p: write_npz(p / "d.npz", x=np.zeros((2, 3, 4, 4), np.uint8), ids=samples(2)["ids"]),
        r"input 'x' is uint8, the model expects float32",
    ),
    (
        "float overflow",
        lambda p: write_npz(p / "d.npz", x=np.full((2, 3, 4, 4), 1e300), ids=samples(2)["ids"]),
        r"d\.npz.*input 'x' overflows float32",
    ),
    (
        "different sample counts",
        lambda p: write_npz(p / "d.npz", x=samples(3)["x"], ids=samples(2)["ids"]),
        r"d\.npz: inputs have different sample counts: 'x' 3 .*'ids' 2",
    ),
    ("empty folder", lambda p: p, r"the folder holds no \.npz or \.npy files"),
    ("missing path", lambda p: p / "nowhere.npz", r"nowhere\.npz: no such file or folder"),
    (
        "corrupt npz",
        lambda p: (p / "d.npz").write_bytes(b"PK\x03\x04 truncated") and p / "d.npz",
        r"d\.npz: cannot read as \.npz",
    ),
    (
        "corrupt npy",
        lambda p: (p / "x.npy").write_bytes(b"\x93NUMPY garbage") and p,
        r"x\.npy: cannot read as \.npy",
    ),
    (
        "pickled objects",
        lambda p: write_npz(p / "d.npz", x=np.array([{"a": 1}], dtype=object), ids=samples(1)["ids"]),
        r"d\.npz: cannot read as \.npz .*pickle",
    ),
    ("not a data file", lambda p: (p / "d.csv").write_text("1,2") and p / "d.csv", r"d\.csv: not a \.npz"),
]


@pytest.mark.parametrize(("what", "make", "pattern"), BAD_DATA, ids=[case[0] for case in BAD_DATA])
def test_bad_data_is_a_usage_error_naming_file_and_input(tmp_path: Path, what, make, pattern) -> None:
    source = make(tmp_path)
    with pytest.raises(UsageError, match=pattern):
        list(open_data(source).feeds(model()))


def test_bad_feed_dicts_name_the_feed_and_input() -> None:
    with pytest.raises(UsageError, match=r"<feeds> \(feed 1\): \['oops'\] is not a graph input"):
        list(open_data([samples(1), {**samples(1), "oops": np.zeros(1)}]).feeds(model()))
    with pytest.raises(UsageError, match=r"<feeds>: feed 0 is a list, not a dict"):
        list(open_data([[1, 2]]).feeds(model()))
    with pytest.raises(UsageError, match=r"input 'ids' has values outside the range of int32"):
        m32 = model("g (int32[N] ids) => (int32[N] z) { z = Identity(ids) }")
        list(open_data({"ids": np.array([2**40], np.int64)}).feeds(m32))
    with pytest.raises(UsageError, match=r"batch must be an integer >= 1"):
        open_data({"x": np.zeros(1)}, batch=0)


def test_input_specs_skip_initializers_listed_as_inputs() -> None:
    m = model("g (float[N, 2] x) => (float[N, 2] y) { y = Relu(x) }")
    m.graph.input.append(onnx.helper.make_tensor_value_info("w", onnx.TensorProto.FLOAT, [2]))
    m.graph.initializer.append(onnx.numpy_helper.from_array(np.zeros(2, np.float32), "w"))
    assert [s.name for s in input_specs(m)] == ["x"]


# --- exposed tensors and statistics ------------------------------------------------------------


def test_expose_works_on_a_copy_and_refuses_unknown_tensors() -> None:
    m = model()
    before = m.SerializeToString()
    exposed = expose(m, ["h", "y", "h"])
    assert [o.name for o in exposed.graph.output] == ["y", "z", "h"]
    assert m.SerializeToString() == before
    with pytest.raises(UsageError, match=r"cannot expose \['nope'\]"):
        expose(m, ["nope"])


def test_run_with_outputs_streams_one_batch_at_a_time() -> None:
    consumed = []

    def source():
        for seed in range(4):
            consumed.append(seed)
            yield samples(2, seed=seed)

    stream = run_with_outputs(model(), ["h", "y"], IterableLoader(source()))
    first = next(stream)
    assert consumed == [0]  # nothing read ahead: memory holds one batch
    np.testing.assert_array_equal(first["h"], np.maximum(samples(2, seed=0)["x"], 0))
    np.testing.assert_array_equal(first["y"], -first["h"])
    assert len(list(stream)) == 3 and consumed == [0, 1, 2, 3]


def test_collect_stats_match_numpy_over_all_samples(tmp_path: Path) -> None:
    data = samples(7, hw=3)
    np.savez(tmp_path / "d.npz", **data)
    stats = collect_stats(model(), {"h": 1, "ids": -1}, tmp_path / "d.npz", gram=["h"])
    h = np.maximum(data["x"], 0).astype(np.float64)
    flat = np.moveaxis(h, 1, -1).reshape(-1, 3)
    s = stats["h"]
    assert s.count == 7 * 9 and s.axis == 1
    np.testing.assert_allclose(s.mean, flat.mean(axis=0))
    np.testing.assert_allclose(s.var, flat.var(axis=0))
    np.testing.assert_allclose(s.mean_abs, np.abs(flat).mean(axis=0))
    np.testing.assert_allclose(s.gram, flat.T @ flat)
    np.testing.assert_allclose(stats["ids"].mean, data["ids"].mean(axis=0))
    assert stats["ids"].gram is None and stats["ids"].axis == 1
    with pytest.raises(UsageError, match="no samples"):
        collect_stats(model(), {"h": 1}, [])


@settings(max_examples=40, deadline=None)
@given(
    x=hnp.arrays(
        np.float32,
        hnp.array_shapes(min_dims=2, max_dims=4, min_side=1, max_side=5),
        elements=st.floats(-1e3, 1e3, width=32),
    ),
    data=st.data(),
)
def test_stats_of_two_halves_merged_equal_stats_of_the_whole(x: np.ndarray, data) -> None:
    axis = data.draw(st.integers(1, x.ndim - 1))
    cut = data.draw(st.integers(0, x.shape[0]))
    whole = ChannelStats.of(x, axis=axis, gram=True)
    parts = [x[:cut], x[cut:]]
    merged = [ChannelStats.of(p, axis=axis, gram=True) for p in parts if p.shape[0]]
    total = merged[0] if len(merged) == 1 else merged[0] + merged[1]
    assert total.count == whole.count and total.axis == whole.axis
    for field in ("sum", "sum_abs", "sum_sq", "gram"):
        np.testing.assert_allclose(getattr(total, field), getattr(whole, field), rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(total.var, whole.var, rtol=1e-6, atol=1e-6)


def test_stats_refuse_to_merge_different_layouts() -> None:
    a = ChannelStats.of(np.ones((2, 3)), axis=1)
    with pytest.raises(ValueError, match="3 channels on axis 1 with 2 channels"):
        a.merge(ChannelStats.of(np.ones((3, 2)), axis=1))
    with pytest.raises(ValueError, match="Gram matrix"):
        a + ChannelStats.of(np.ones((2, 3)), axis=1, gram=True)
    with pytest.raises(ValueError, match="out of range"):
        ChannelStats.of(np.ones((2, 3)), axis=2)
    assert ChannelStats.of(np.ones((2, 3)), axis=-1).axis == 1
