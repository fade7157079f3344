"""Quantize reference exports with ONNX Runtime's quantization tool (`onnxruntime.quantization`).

Models (made from files already in models/, nothing downloaded):

* ``resnet18_qdq``, ``mobilenet_v2_qdq``: ``quantize_static`` in QDQ format, per-channel int8
  weights (symmetric, one scale per output channel, ``axis=0``), uint8 activations with one
  scale and zero point per tensor, int32 biases with per-channel scales; calibrated on
  ``CALIBRATION_SAMPLES`` random normal inputs (enough to fix the ranges: the point is the
  graph, not accuracy). From ``models/torchvision/{resnet18,mobilenet_v2}_dynamo.onnx``.
* ``resnet18_qoperator``: the same static quantization in the QOperator format: ``QLinearConv``
  and ONNX Runtime's com.microsoft ``QLinearAdd`` and ``QGemm``.
* ``resnet18_dynamic``: ``quantize_dynamic`` with uint8 weights (asymmetric, one zero point per
  tensor): ``DynamicQuantizeLinear`` + ``ConvInteger`` / ``MatMulInteger`` + ``Cast`` + ``Mul``.
* ``bert_dynamic``: ``quantize_dynamic`` with int8 weights of ``models/transformers/
  bert_dynamo.onnx``: every projection and FFN MatMul becomes ``MatMulInteger`` fed by
  ``DynamicQuantizeLinear``, as for transformer encoders served quantized on CPU.

Each source goes through ``quant_pre_process`` (shape inference, ``skip_symbolic_shape=True``)
first, as ONNX Runtime recommends. Checks: ``onnx.checker`` (full) and an ONNX Runtime run
whose outputs keep the float model's shapes. Run with the project's venv (onnxruntime is a
dependency)::

    python models/quantized/make_quantized.py

It rewrites the ``.onnx`` files and ``PROVENANCE.json``.
"""

from __future__ import annotations

import collections
import json
import platform
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

HERE = Path(__file__).resolve().parent
MODELS = HERE.parent
SEED = 0
CALIBRATION_SAMPLES = 8

STATIC = {
    "resnet18_qdq": (MODELS / "torchvision" / "resnet18_dynamo.onnx", QuantFormat.QDQ),
    "mobilenet_v2_qdq": (MODELS / "torchvision" / "mobilenet_v2_dynamo.onnx", QuantFormat.QDQ),
    "resnet18_qoperator": (MODELS / "torchvision" / "resnet18_dynamo.onnx", QuantFormat.QOperator),
}
DYNAMIC = {
    "resnet18_dynamic": (MODELS / "torchvision" / "resnet18_dynamo.onnx", QuantType.QUInt8),
    "bert_dynamic": (MODELS / "transformers" / "bert_dynamo.onnx", QuantType.QInt8),
}


class RandomImages(CalibrationDataReader):
    """`CALIBRATION_SAMPLES` standard normal feeds for the model's one image input."""

    def __init__(self, model: onnx.ModelProto) -> None:
        (vi,) = model.graph.input
        shape = [d.dim_value or 1 for d in vi.type.tensor_type.shape.dim]
        rng = np.random.default_rng(SEED)
        self._feeds = iter(
            {vi.name: rng.standard_normal(shape).astype(np.float32)} for _ in range(CALIBRATION_SAMPLES)
        )

    def get_next(self):
        return next(self._feeds, None)


def _feeds(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(SEED + 1)
    feeds = {}
    for vi in model.graph.input:
        dims = [d.dim_value or (2 if i == 0 else 16) for i, d in enumerate(vi.type.tensor_type.shape.dim)]
        if vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT:
            feeds[vi.name] = rng.standard_normal(dims).astype(np.float32)
        else:
            feeds[vi.name] = rng.integers(0, 2, dims).astype(np.int64)
    return feeds


def _check(source: Path, path: Path) -> dict:
    onnx.checker.check_model(str(path), full_check=True)
    model = onnx.load(str(path))
    feeds = _feeds(model)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)
    want = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"]).run(None, feeds)
    assert [g.shape for g in got] == [w.shape for w in want], path.name
    counts = collections.Counter(n.op_type for n in model.graph.node)
    return {
        "nodes": len(model.graph.node),
        "op_types": dict(sorted(counts.items())),
        "size_bytes": path.stat().st_size,
        "opset": next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
        "ir_version": model.ir_version,
        "max_abs_diff_to_float": float(max(np.abs(g - w).max() for g, w in zip(got, want, strict=True))),
    }


def main() -> int:
    versions = {
        "python": platform.python_version(),
        "onnx": onnx.__version__,
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
    }
    provenance: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (source, quant_format) in STATIC.items():
            pre = Path(tmp) / f"{name}_pre.onnx"
            quant_pre_process(str(source), str(pre), skip_symbolic_shape=True)
            path = HERE / f"{name}.onnx"
            quantize_static(
                str(pre),
                str(path),
                RandomImages(onnx.load(str(pre))),
                quant_format=quant_format,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
            )
            provenance[path.name] = {
                "source": str(source.relative_to(MODELS)),
                "call": f"quantize_static(pre, out, RandomImages(8 samples), quant_format={quant_format}, "
                "per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)",
                **_check(source, path),
                "versions": versions,
            }
        for name, (source, weight_type) in DYNAMIC.items():
            pre = Path(tmp) / f"{name}_pre.onnx"
            quant_pre_process(str(source), str(pre), skip_symbolic_shape=True)
            path = HERE / f"{name}.onnx"
            quantize_dynamic(str(pre), str(path), weight_type=weight_type)
            provenance[path.name] = {
                "source": str(source.relative_to(MODELS)),
                "call": f"quantize_dynamic(pre, out, weight_type=QuantType.{weight_type.name})",
                **_check(source, path),
                "versions": versions,
            }
    (HERE / "PROVENANCE.json").write_text(json.dumps(provenance, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
