"""Export Keras recurrent models with tf2onnx into models/sequence (beside make_sequence.py's).

* ``keras_lstm``     Conv1D(32, 3, same, relu) on [B, 20, 16], LSTM(48) (last step), Dense(10);
* ``keras_lstm_bi``  the same with Bidirectional(LSTM(48)) (forward and backward concatenated).

Keras GRU (``reset_after=True``, the default) is converted by tf2onnx into a ``Loop``, not an ONNX
``GRU``: control flow, not exported here. Weights: ``tf.random.set_seed(0)`` then every weight
``+= 0.02 * normal`` (numpy seed 1), so no bias is zero. Exported with
``tf2onnx.convert.from_keras(model, input_signature=(TensorSpec((None, 20, 16), float32, "x"),),
opset=17)``; each file passes ``onnx.checker`` (full check) and matches Keras in ONNX Runtime at
batches 1 and 3 (relative error below 1e-4). Run with a venv that has TensorFlow 2.21 and tf2onnx
1.17 (neither is a dependency of onnxprune)::

    /tmp/venv-tf/bin/python models/sequence/make_keras_sequence.py

It adds or rewrites its files' entries in ``PROVENANCE.json``.
"""

from __future__ import annotations

import collections
import json
import os
import platform
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import onnx
import onnxruntime as ort
import tensorflow as tf
import tf2onnx

HERE = Path(__file__).resolve().parent
keras = tf.keras


def build(bidirectional: bool) -> keras.Model:
    tf.random.set_seed(0)
    x = keras.Input((20, 16), name="x")
    h = keras.layers.Conv1D(32, 3, padding="same", activation="relu")(x)
    cell = keras.layers.LSTM(48)
    h = keras.layers.Bidirectional(cell)(h) if bidirectional else cell(h)
    model = keras.Model(x, keras.layers.Dense(10)(h))
    rng = np.random.default_rng(1)
    model.set_weights([w + 0.02 * rng.standard_normal(w.shape).astype(w.dtype) for w in model.get_weights()])
    return model


def main() -> None:
    provenance_path = HERE / "PROVENANCE.json"
    provenance = json.loads(provenance_path.read_text()) if provenance_path.exists() else {}
    for name, bidirectional in (("keras_lstm", False), ("keras_lstm_bi", True)):
        model = build(bidirectional)
        spec = (tf.TensorSpec((None, 20, 16), tf.float32, name="x"),)
        proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=17)
        path = HERE / f"{name}.onnx"
        onnx.save_model(proto, path)
        onnx.checker.check_model(onnx.load(path), full_check=True)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        checks = []
        for batch in (1, 3):
            x = np.random.default_rng(10 + batch).standard_normal((batch, 20, 16)).astype(np.float32)
            want = model(x).numpy()
            got = session.run(None, {"x": x})[0]
            diff = float(np.abs(got - want).max())
            rel = diff / max(1.0, float(np.abs(want).max()))
            if rel >= 1e-4:
                raise SystemExit(f"{path.name}: batch {batch} differs from Keras (rel {rel:.2e})")
            checks.append({"batch": batch, "max_abs_diff": diff, "rel_err": rel})
        provenance[path.name] = {
            "name": name,
            "what": f"Conv1D(32) + relu, {'Bidirectional(LSTM(48))' if bidirectional else 'LSTM(48)'}, Dense(10)",
            "exporter": "tf2onnx",
            "export_call": "tf2onnx.convert.from_keras(model, input_signature=(TensorSpec((None, 20, 16)),), opset=17)",
            "opset": 17,
            "ir_version": proto.ir_version,
            "input": {"kind": "float", "shape": ["batch", 20, 16]},
            "parameters": sum(int(np.prod(t.dims)) for t in proto.graph.initializer),
            "op_types": dict(sorted(collections.Counter(n.op_type for n in proto.graph.node).items())),
            "checks": checks,
            "seed": 0,
            "perturbation": "every weight += 0.02 * standard normal (numpy default_rng(1))",
            "versions": {
                "python": platform.python_version(),
                "tensorflow": tf.__version__,
                "tf2onnx": tf2onnx.__version__,
                "onnx": onnx.__version__,
                "onnxruntime": ort.__version__,
                "numpy": np.__version__,
            },
        }
        print(path.name, provenance[path.name]["op_types"], flush=True)
    provenance_path.write_text(json.dumps(dict(sorted(provenance.items())), indent=1) + "\n")


if __name__ == "__main__":
    main()
