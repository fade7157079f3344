"""Property: on any generated CNN graph, pruning is valid and mask-equivalent, or refuses cleanly.

For every model `cnn_graphs()` builds (tests/graph_strategies.py) and any ratio in [0, 0.9],
criterion l1 or l2 and round_to 1 or 4, `onnxprune.prune` either

- succeeds, and `onnxprune.validate(original, result.model, result.plan)` holds (onnx.checker,
  ONNX Runtime load and run, plan slices, mask-equivalence parity), the graph inputs and outputs
  keep their names, element types and shapes, the IR version, opsets, producer and metadata are
  kept, and the input ModelProto is left unmodified; or
- raises `onnxprune.OnnxPruneError` with a message (and still leaves the input unmodified).

Any other exception fails the property.

Profiles (the environment variable ONNXPRUNE_HYPOTHESIS_PROFILE picks one):

- ``ci`` (default): 200 examples, derandomized so every CI run sees the same graphs, no deadline;
  well under 3 minutes on 2 cores.
- ``long``: 5000 random examples (a new set each run), for hunting bugs locally::

      ONNXPRUNE_HYPOTHESIS_PROFILE=long python -m pytest -q tests/test_property.py -x

  A failure prints the generated model as ONNX text and a ``@reproduce_failure`` blob.
"""

from __future__ import annotations

import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

import onnxprune
from tests import graph_strategies
from tests.graph_strategies import GeneratorError, RuntimeOptimizerError, check_valid, cnn_graphs

_COMMON = {
    "deadline": None,
    "database": None,
    "print_blob": True,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}
settings.register_profile("onnxprune-ci", max_examples=200, derandomize=True, **_COMMON)
settings.register_profile("onnxprune-long", max_examples=5000, derandomize=False, **_COMMON)

PROFILE_ENV = "ONNXPRUNE_HYPOTHESIS_PROFILE"
PROFILE = settings.get_profile(f"onnxprune-{os.environ.get(PROFILE_ENV, 'ci')}")

RATIOS = st.one_of(st.sampled_from([0.0, 0.5, 0.9]), st.floats(0.0, 0.9, allow_nan=False))


def _io(model: onnx.ModelProto) -> list[tuple[str, str, int, list[int | str]]]:
    """Name, kind, element type and dims (value or symbol) of every graph input and output."""
    initializers = {t.name for t in model.graph.initializer}
    rows = []
    for kind, infos in (("input", model.graph.input), ("output", model.graph.output)):
        for info in infos:
            if info.name in initializers:
                continue
            tensor = info.type.tensor_type
            dims = [_dim(d) for d in tensor.shape.dim]
            rows.append((info.name, kind, tensor.elem_type, dims))
    return rows


def describe(model: onnx.ModelProto) -> str:
    """The model as ONNX text, weights of more than 8 values shown as typed inputs (values left out)."""
    bare = onnx.ModelProto()
    bare.CopyFrom(model)
    inputs = {i.name for i in bare.graph.input}
    big = [t for t in bare.graph.initializer if int(np.prod(t.dims)) > 8]
    bare.graph.input.extend(
        onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
        for t in big
        if t.name not in inputs
    )
    small = [t for t in bare.graph.initializer if int(np.prod(t.dims)) <= 8]
    del bare.graph.initializer[:]
    bare.graph.initializer.extend(small)
    for node in bare.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].t.ByteSize() > 256:
            node.attribute[0].t.ClearField("raw_data")
    return onnx.printer.to_text(bare)


def _dim(dim: onnx.TensorShapeProto.Dimension) -> int | str:
    """A static size, a symbol, or "?" for an unknown dim (shape inference names those unk__k)."""
    if dim.HasField("dim_value"):
        return dim.dim_value
    return "?" if not dim.dim_param or dim.dim_param.startswith("unk__") else dim.dim_param


def _same_io(before: list, after: list) -> bool:
    """Same names, kinds, element types and dims; a dim unknown before ("?") may be anything after."""
    if [row[:3] for row in before] != [row[:3] for row in after]:
        return False
    for (*_, dims), (*_, new_dims) in zip(before, after, strict=True):
        if len(dims) != len(new_dims) or any(d not in ("?", n) for d, n in zip(dims, new_dims, strict=True)):
            return False
    return True


@PROFILE
@given(
    model=cnn_graphs(),
    ratio=RATIOS,
    criterion=st.sampled_from(["l1", "l2"]),
    round_to=st.sampled_from([1, 4]),
)
def test_prune_is_mask_equivalent_or_refuses(model, ratio, criterion, round_to):
    try:
        _check_prune(model, ratio, criterion, round_to)
    except BaseException:
        note(describe(model))  # printed for the final (shrunk) failing example only
        raise


def _check_prune(model: onnx.ModelProto, ratio: float, criterion: str, round_to: int) -> None:
    before = model.SerializeToString()
    try:
        result = onnxprune.prune(model, ratio=ratio, criterion=criterion, round_to=round_to)
    except onnxprune.OnnxPruneError as exc:
        assert str(exc).strip(), f"{type(exc).__name__} without a message"
        assert model.SerializeToString() == before, "prune modified its input model"
        return
    assert model.SerializeToString() == before, "prune modified its input model"
    note(f"plan slices: {[(s.tensor, s.axis, s.role, s.size, len(s.keep)) for s in result.plan.slices]}")
    report = onnxprune.validate(model, result.model, result.plan)
    assert report, str(report)
    assert _same_io(_io(model), _io(result.model)), f"graph inputs/outputs changed: {_io(result.model)}"
    assert result.model.ir_version == model.ir_version
    assert list(result.model.opset_import) == list(model.opset_import)
    assert result.model.producer_name == model.producer_name
    assert list(result.model.metadata_props) == list(model.metadata_props)


@settings(max_examples=50, deadline=None, database=None, derandomize=True)
@given(cnn_graphs())
def test_generated_models_are_valid(model):
    """The strategy's own guarantee (it checks every model it returns; this re-checks from outside)."""
    assert model.ir_version == 8
    assert 13 <= model.opset_import[0].version <= 18
    check_valid(model)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "N" or dims[0].dim_value == 1
    for tensor in model.graph.initializer:
        array = onnx.numpy_helper.to_array(tensor)
        if array.dtype == np.float32:
            assert np.all(array != 0), f"initializer {tensor.name} has zeros"


def test_check_valid_rejects_a_broken_model():
    model = onnx.parser.parse_model(
        """<ir_version: 8, opset_import: ["" : 17]>
        g (float[1, 3, 4, 4] x) => (float[1, 5, 4, 4] y) { y = Relu(x) }"""
    )
    with pytest.raises(GeneratorError):
        check_valid(model)


def test_check_valid_tells_runtime_optimizer_failures_from_broken_models(monkeypatch):
    """A model ONNX Runtime gets wrong only with graph optimizations on is ORT's bug (the strategy
    rejects it); one that fails without them is the generator's."""
    model = onnx.parser.parse_model(
        """<ir_version: 8, opset_import: ["" : 17]>
        g (float[1, 3, 4, 4] x) => (float[1, 3, 4, 4] y) { y = Relu(x) }"""
    )
    check_valid(model)
    levels = []
    real = graph_strategies._check_runs

    def fails_when_optimized(model, level):
        levels.append(level)
        if level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL:
            raise GeneratorError("wrong shapes after fusion")
        real(model, level)

    monkeypatch.setattr(graph_strategies, "_check_runs", fails_when_optimized)
    with pytest.raises(RuntimeOptimizerError):
        check_valid(model)
    assert levels == [ort.GraphOptimizationLevel.ORT_ENABLE_ALL, ort.GraphOptimizationLevel.ORT_DISABLE_ALL]

    def fails_always(model, level):
        raise GeneratorError("wrong shapes")

    monkeypatch.setattr(graph_strategies, "_check_runs", fails_always)
    with pytest.raises(GeneratorError) as raised:
        check_valid(model)  # passes onnx.checker; fails in ONNX Runtime at every level
    assert not isinstance(raised.value, RuntimeOptimizerError)
