"""Models with external data and models over 2 GB, on small files (no GB files written here).

Large weights of a model read from disk stay in the input's data file (``read_model(lazy=True)``)
and are streamed to the output's; tests lower the size thresholds (``LAZY_MIN_BYTES``, the 2 GB
switch) so both paths run on the reference model. benchmarks/large_model.py measures a 3 GB model.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import onnxprune
import onnxprune.io as oio
from onnxprune.cli import main
from onnxprune.errors import EXIT_OK, ModelError, UsageError
from onnxprune.io import read_model, save_model
from onnxprune.weights import tensor_array, uses_external_data

from .conftest import MODELS

DEFAULT = MODELS / "default.onnx"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _files(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()}


@pytest.fixture(params=["lazy", "eager"])
def lazy(request, monkeypatch) -> bool:
    """Run with every external weight kept on disk (lazy) and with all of them read at once."""
    if request.param == "lazy":
        monkeypatch.setattr(oio, "LAZY_MIN_BYTES", 0)
    return request.param == "lazy"


def _external_copy(directory: Path, name: str = "in.onnx", location: str = "weights.bin") -> Path:
    """The default model saved with every tensor in one external data file."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    onnx.save_model(onnx.load(DEFAULT), path, save_as_external_data=True, location=location, size_threshold=0)
    return path


def _external_locations(path: Path) -> dict[str, str]:
    proto = onnx.load(path, load_external_data=False)
    return {
        t.name: next(e.value for e in t.external_data if e.key == "location")
        for t in proto.graph.initializer
        if uses_external_data(t)
    }


def test_external_model_prunes_and_saves_with_external_data(tmp_path, lazy):
    src = _external_copy(tmp_path / "in")
    before = _digest(src.parent / "weights.bin")
    result = onnxprune.prune(src, ratio=0.4)
    out = tmp_path / "out" / "pruned.onnx"
    out.parent.mkdir()
    assert result.save(out) == out
    assert _files(out.parent) == {"pruned.onnx", "pruned.onnx.data"}
    locations = _external_locations(out)
    assert locations and set(locations.values()) == {"pruned.onnx.data"}
    assert _digest(src.parent / "weights.bin") == before
    assert _files(src.parent) == {"in.onnx", "weights.bin"}
    onnx.checker.check_model(str(out), full_check=True)
    loaded = onnx.load(out)
    assert len(loaded.graph.initializer) == len(result.model.graph.initializer)
    assert onnxprune.validate(DEFAULT, out, result.plan)
    assert onnxprune.validate(src, result.model, result.plan)  # the in-memory result is complete


def test_lazy_read_keeps_weights_on_disk(tmp_path, monkeypatch):
    monkeypatch.setattr(oio, "LAZY_MIN_BYTES", 0)
    src = _external_copy(tmp_path)
    loaded = read_model(src, lazy=True)
    assert loaded.base_dir == str(tmp_path)
    assert loaded.data_files == {(tmp_path / "weights.bin").resolve()}
    reference = {t.name: numpy_helper.to_array(t) for t in onnx.load(DEFAULT).graph.initializer}
    on_disk = 0
    for tensor in loaded.model.graph.initializer:
        # tensors small enough for passes to read their values (shape constants) are read at once
        large = np.prod(tensor.dims) > oio.LAZY_MIN_ELEMENTS
        assert uses_external_data(tensor) == large
        array = tensor_array(tensor, loaded.base_dir)
        assert isinstance(array, np.memmap) == large and not array.flags.writeable
        assert np.array_equal(array, reference[tensor.name])
        on_disk += large
    assert on_disk >= 5
    eager = read_model(src)
    assert eager.base_dir is None and eager.external
    assert not any(uses_external_data(t) for t in eager.model.graph.initializer)


def test_external_input_with_nothing_pruned_is_copied_whole(tmp_path, lazy):
    src = _external_copy(tmp_path)
    result = onnxprune.prune(src, ratio=0.0)
    out = tmp_path / "same.onnx"
    result.save(out)
    original = onnx.load(src)
    copied = onnx.load(out)
    assert [t.name for t in copied.graph.initializer] == [t.name for t in original.graph.initializer]
    for a, b in zip(original.graph.initializer, copied.graph.initializer, strict=True):
        assert np.array_equal(numpy_helper.to_array(a), numpy_helper.to_array(b))
    assert (tmp_path / "same.onnx.data").exists()


def test_overwriting_the_input_never_writes_its_data_file(tmp_path, lazy):
    src = _external_copy(tmp_path, location="in.onnx.data")
    data = tmp_path / "in.onnx.data"
    before = _digest(data)
    result = onnxprune.prune(src, ratio=0.4)
    with pytest.raises(UsageError, match="input model"):
        result.save(src)
    with pytest.raises(UsageError, match="external data file of the input"):
        result.save(data, force=True)
    result.save(src, force=True)
    assert _digest(data) == before
    assert set(_external_locations(src).values()) == {"in.onnx.1.data"}
    assert onnxprune.validate(DEFAULT, src, result.plan)


def test_plan_replay_on_an_external_data_model(tmp_path, lazy):
    src = _external_copy(tmp_path / "a")
    first = onnxprune.prune(src, ratio=0.5)
    plan_file = tmp_path / "plan.json"
    first.plan.save(plan_file)
    other = _external_copy(tmp_path / "b", location="other.bin")  # another export, same weights
    replay = onnxprune.prune(other, plan=plan_file)
    assert replay.plan.slices == first.plan.slices
    out = tmp_path / "b" / "replayed.onnx"
    replay.save(out)
    assert (tmp_path / "b" / "replayed.onnx.data").exists()
    assert onnxprune.validate(other, out, first.plan)


def test_cli_writes_external_data_for_an_external_input(tmp_path, lazy, capsys):
    src = _external_copy(tmp_path)
    out = tmp_path / "cli.onnx"
    assert main([str(src), str(out), "--ratio", "0.4", "--validate"]) == EXIT_OK
    assert (tmp_path / "cli.onnx.data").exists()
    assert "validation" not in capsys.readouterr().err


def test_inline_input_is_saved_inline(tmp_path):
    result = onnxprune.prune(DEFAULT, ratio=0.4)
    out = tmp_path / "out.onnx"
    result.save(out)
    assert _files(tmp_path) == {"out.onnx"}
    assert not _external_locations(out)


def test_models_over_the_limit_are_saved_with_external_data(tmp_path):
    model = onnx.load(DEFAULT)
    before = model.SerializeToString()
    small = save_model(model, tmp_path / "small.onnx")
    assert not _external_locations(small) and _files(tmp_path) == {"small.onnx"}
    limit = model.ByteSize() - 1  # stands in for 2 GB
    big = save_model(model, tmp_path / "big.onnx", max_inline_bytes=limit)
    assert model.SerializeToString() == before  # saving does not touch the model
    assert (tmp_path / "big.onnx.data").exists()
    assert (tmp_path / "big.onnx").stat().st_size < limit
    locations = _external_locations(big)
    assert set(locations.values()) == {"big.onnx.data"}
    # onnx's own rule: initializers of 1 KiB or more go to the data file
    sizes = {t.name: len(t.raw_data) for t in model.graph.initializer}
    assert set(locations) == {n for n, size in sizes.items() if size >= oio.EXTERNAL_MIN_BYTES}
    reloaded = onnx.load(big)
    for a, b in zip(model.graph.initializer, reloaded.graph.initializer, strict=True):
        assert np.array_equal(numpy_helper.to_array(a), numpy_helper.to_array(b))
    onnx.checker.check_model(str(big), full_check=True)


def test_large_tensors_are_aligned_in_the_data_file(tmp_path, monkeypatch):
    monkeypatch.setattr(oio, "ALIGN_MIN_BYTES", 4096)
    model = onnx.load(DEFAULT)
    save_model(model, tmp_path / "m.onnx", external=True)
    proto = onnx.load(tmp_path / "m.onnx", load_external_data=False)
    for tensor in proto.graph.initializer:
        info = {e.key: int(e.value) for e in tensor.external_data if e.key != "location"}
        if info and info["length"] >= 4096:
            assert info["offset"] % oio.ALIGNMENT == 0, tensor.name


def _fail_writes(monkeypatch) -> None:
    """Every file the save creates fails its first write: a full disk."""
    real = oio._create_temp

    class FullDisk(io.RawIOBase):
        def __init__(self, fh):
            self.fh = fh

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def close(self):
            self.fh.close()
            super().close()

    def create_temp(parent, name):
        tmp, fh = real(parent, name)
        return tmp, FullDisk(fh)

    monkeypatch.setattr(oio, "_create_temp", create_temp)


@pytest.mark.parametrize("external", [False, True])
def test_a_failed_write_leaves_no_files(tmp_path, monkeypatch, external):
    model = onnx.load(DEFAULT)
    out = tmp_path / "out.onnx"
    _fail_writes(monkeypatch)
    with pytest.raises(UsageError, match=r"cannot write .*No space left"):
        save_model(model, out, external=external)
    assert _files(tmp_path) == set()


def test_a_failed_write_keeps_the_previous_output(tmp_path, monkeypatch):
    monkeypatch.setattr(oio, "LAZY_MIN_BYTES", 0)
    src = _external_copy(tmp_path / "in")
    result = onnxprune.prune(src, ratio=0.0)  # every weight still read from weights.bin
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "m.onnx").write_bytes(b"previous model")
    (out_dir / "m.onnx.data").write_bytes(b"previous data")
    (src.parent / "weights.bin").unlink()  # the input's data vanishes before the save
    with pytest.raises(ModelError, match=r"weights\.bin"):
        result.save(out_dir / "m.onnx")
    assert _files(out_dir) == {"m.onnx", "m.onnx.data"}
    assert (out_dir / "m.onnx").read_bytes() == b"previous model"
    assert (out_dir / "m.onnx.data").read_bytes() == b"previous data"


def test_a_model_that_cannot_be_placed_takes_its_new_data_file_back(tmp_path, monkeypatch):
    model = onnx.load(DEFAULT)
    real_replace = os.replace

    def replace(src, dst):
        if Path(dst).name == "out.onnx":
            raise OSError(errno.EIO, "Input/output error")
        return real_replace(src, dst)

    monkeypatch.setattr(oio.os, "replace", replace)
    with pytest.raises(UsageError, match="cannot write"):
        save_model(model, tmp_path / "out.onnx", external=True)
    assert _files(tmp_path) == set()


def test_saved_files_get_the_usual_permissions(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    save_model(onnx.load(DEFAULT), tmp_path / "m.onnx", external=True)
    for name in ("m.onnx", "m.onnx.data"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize(
    ("location", "offset", "length", "message"),
    [
        ("../escape.bin", 0, 64, "relative path"),
        ("/abs/escape.bin", 0, 64, "relative path"),
        ("w.bin", 0, 32, "needs 64"),
        ("w.bin", 32, 64, "outside"),
        ("missing.bin", 0, 64, "not readable"),
    ],
)
def test_bad_external_references_are_model_errors(tmp_path, location, offset, length, message):
    (tmp_path / "w.bin").write_bytes(np.arange(16, dtype=np.float32).tobytes())
    tensor = onnx.TensorProto(name="w", data_type=onnx.TensorProto.FLOAT, dims=[16])
    tensor.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", offset), ("length", length)):
        tensor.external_data.add(key=key, value=str(value))
    with pytest.raises(ModelError, match=message):
        tensor_array(tensor, tmp_path)


def test_saving_a_model_with_unresolved_external_data_needs_its_directory(tmp_path):
    src = _external_copy(tmp_path)
    proto = onnx.load(src, load_external_data=False)
    with pytest.raises(ModelError, match="no directory"):
        save_model(proto, tmp_path / "out.onnx")
    save_model(proto, tmp_path / "out.onnx", base_dir=tmp_path)
    assert np.array_equal(
        numpy_helper.to_array(onnx.load(tmp_path / "out.onnx").graph.initializer[0]),
        numpy_helper.to_array(onnx.load(DEFAULT).graph.initializer[0]),
    )


def _matmul_model(storage: str) -> onnx.ModelProto:
    """x @ w + b, then a Reshape by an int64 constant: w [64, 64] float32 (16 KiB, over onnx's
    1 KiB external threshold), b and the shape small; `storage` says how w holds its values
    (raw_data, as exporters and numpy_helper write it, or the typed float_data field)."""
    w = np.arange(64 * 64, dtype=np.float32).reshape(64, 64) / 7
    if storage == "raw":
        weight = numpy_helper.from_array(w, "w")
    else:
        weight = onnx.helper.make_tensor("w", onnx.TensorProto.FLOAT, [64, 64], w.ravel().tolist())
        assert not weight.HasField("raw_data")
    graph = onnx.helper.make_graph(
        [
            onnx.helper.make_node("MatMul", ["x", "w"], ["h"]),
            onnx.helper.make_node("Add", ["h", "b"], ["a"]),
            onnx.helper.make_node("Reshape", ["a", "s"], ["y"]),
        ],
        "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 64])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [8, 8])],
        initializer=[
            weight,
            numpy_helper.from_array(np.linspace(-1, 1, 64, dtype=np.float32), "b"),
            numpy_helper.from_array(np.array([8, 8], dtype=np.int64), "s"),
        ],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    return model


def _weights(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


@pytest.mark.parametrize("storage", ["raw", "float_data"])
@pytest.mark.parametrize("margin", [-1, -8000])
def test_max_inline_bytes_below_the_model_size_writes_external_data(tmp_path, storage, margin):
    model = _matmul_model(storage)
    before = model.SerializeToString()
    limit = model.ByteSize() + margin
    out = save_model(model, tmp_path / "m.onnx", max_inline_bytes=limit)
    assert model.SerializeToString() == before
    assert _files(tmp_path) == {"m.onnx", "m.onnx.data"}
    assert out.stat().st_size <= limit
    assert set(_external_locations(out).values()) == {"m.onnx.data"}
    assert set(_external_locations(out)) == {"w"}  # b and s are under 1 KiB: inline
    reloaded = onnx.load(out)
    expected, got = _weights(model), _weights(reloaded)
    assert list(got) == list(expected)
    for name, array in expected.items():
        assert got[name].dtype == array.dtype and np.array_equal(got[name], array), name
    onnx.checker.check_model(str(out), full_check=True)


@pytest.mark.parametrize("storage", ["raw", "float_data"])
@pytest.mark.parametrize("margin", [0, 1, 10**6])
def test_max_inline_bytes_at_or_above_the_model_size_writes_one_file(tmp_path, storage, margin):
    model = _matmul_model(storage)
    out = save_model(model, tmp_path / "m.onnx", max_inline_bytes=model.ByteSize() + margin)
    assert _files(tmp_path) == {"m.onnx"}
    assert out.read_bytes() == model.SerializeToString()
    assert not _external_locations(out)
