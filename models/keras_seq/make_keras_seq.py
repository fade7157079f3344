"""Export small Keras sequence models (Dense on 3-D inputs) to ONNX with tf2onnx.

Keras ``Dense`` on a ``[batch, sequence, features]`` input is a tensordot: tf2onnx lowers it
to ``Reshape(x, [-1, features])``, ``MatMul``, and ``Reshape`` back to
``Concat(Cast(Gather(Cast(Shape(x)), [0, 1])), [units])``, a target computed at run time.
These models exercise that pattern with a dynamic batch *and* sequence:

* ``dense_seq``: ``Dense(64, relu)``, ``Dense(32, relu)``, ``Dense(24)`` on a ``[B, S, 24]``
  input, a residual ``Add`` with the input, ``GlobalAveragePooling1D`` and ``Dense(10)``.
* ``encoder``: one Keras transformer encoder block: ``MultiHeadAttention(num_heads=4,
  key_dim=8)`` (self-attention), residual + ``LayerNormalization``, FFN ``Dense(128, gelu
  approximate)`` + ``Dense(32)``, residual + ``LayerNormalization``, then
  ``GlobalAveragePooling1D`` and ``Dense(10)``, on a ``[B, S, 32]`` input. (tf2onnx 1.17 has no
  conversion for the exact gelu's ``Erfc``; the tanh approximation converts.)

Weights: ``keras.utils.set_random_seed(0)``, Keras' initialisers, then every weight gets a
0.02 N offset (no zero bias for tf2onnx to drop, no two equal tensors).

Conversion: ``tf2onnx.convert.from_keras(model, input_signature=(tf.TensorSpec((None, None,
F), tf.float32, name="input"),), opset=17)``. Checks: ``onnx.checker`` (full) and ONNX Runtime
against ``model(x)`` on a [3, 7, F] batch: ``max|ort - keras| / max(1, max|keras|) < 1e-4``.

Run from a venv with TensorFlow (not a dependency of onnxprune)::

    python -m venv /tmp/venv-tf
    /tmp/venv-tf/bin/pip install tensorflow==2.21.0 tf2onnx==1.17.0 onnx onnxruntime
    /tmp/venv-tf/bin/python models/keras_seq/make_keras_seq.py

It rewrites the ``.onnx`` files and ``PROVENANCE.json``.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import collections
import json
import logging
import platform
import warnings
from pathlib import Path

import keras
import numpy as np
import onnx
import onnxruntime as ort
import tensorflow as tf
import tf2onnx
from keras import layers

HERE = Path(__file__).resolve().parent
SEED = 0
OPSET = 17
TOLERANCE = 1e-4


def dense_seq() -> keras.Model:
    inp = keras.Input((None, 24), name="input")
    h = layers.Dense(64, activation="relu", name="fc1")(inp)
    h = layers.Dense(32, activation="relu", name="fc2")(h)
    h = layers.Dense(24, name="fc3")(h)
    h = layers.Add(name="residual")([h, inp])
    h = layers.GlobalAveragePooling1D(name="pool")(h)
    return keras.Model(inp, layers.Dense(10, name="head")(h), name="dense_seq")


def _gelu(t):
    return keras.activations.gelu(t, approximate=True)


def encoder() -> keras.Model:
    inp = keras.Input((None, 32), name="input")
    a = layers.MultiHeadAttention(num_heads=4, key_dim=8, name="mha")(inp, inp)
    x = layers.LayerNormalization(name="ln1")(layers.Add(name="res1")([inp, a]))
    f = layers.Dense(128, activation=_gelu, name="ffn1")(x)  # the usual 4 x model width
    f = layers.Dense(32, name="ffn2")(f)
    x = layers.LayerNormalization(name="ln2")(layers.Add(name="res2")([x, f]))
    x = layers.GlobalAveragePooling1D(name="pool")(x)
    return keras.Model(inp, layers.Dense(10, name="head")(x), name="encoder")


MODELS = {"dense_seq": (dense_seq, 24), "encoder": (encoder, 32)}


def build(name: str) -> keras.Model:
    keras.utils.set_random_seed(SEED)
    model = MODELS[name][0]()
    rng = np.random.default_rng(SEED + 1)
    for w in model.weights:
        w.assign(w.numpy() + (0.02 * rng.standard_normal(w.shape)).astype("float32"))
    return model


def convert(model: keras.Model, features: int, path: Path) -> None:
    spec = (tf.TensorSpec((None, None, features), tf.float32, name="input"),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=OPSET)
    onnx.save_model(proto, str(path), save_as_external_data=False)


def verify(model: keras.Model, features: int, path: Path) -> dict:
    onnx.checker.check_model(str(path), full_check=True)
    proto = onnx.load(str(path))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(SEED + 3).standard_normal((3, 7, features)).astype("float32")
    expected = model(x, training=False).numpy()
    got = sess.run(None, {"input": x})[0]
    diff = float(np.abs(got - expected).max())
    assert diff / max(1.0, float(np.abs(expected).max())) < TOLERANCE, f"{path.name}: max abs diff {diff}"
    counts = collections.Counter(n.op_type for n in proto.graph.node)
    return {
        "nodes": len(proto.graph.node),
        "op_types": dict(sorted(counts.items())),
        "size_bytes": path.stat().st_size,
        "max_abs_diff": diff,
        "opset": OPSET,
        "ir_version": proto.ir_version,
        "parameters": int(sum(np.prod(w.shape) for w in model.weights)),
    }


def main() -> int:
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    tf.get_logger().setLevel("ERROR")
    versions = {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "tf2onnx": tf2onnx.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
    }
    provenance = {}
    for name, (_, features) in MODELS.items():
        model = build(name)
        path = HERE / f"{name}.onnx"
        convert(model, features, path)
        provenance[path.name] = {
            "built_as": f"{name}() in make_keras_seq.py",
            "convert_call": (
                f"tf2onnx.convert.from_keras(model, input_signature=(tf.TensorSpec((None, None, {features}), "
                f'tf.float32, name="input"),), opset={OPSET})'
            ),
            "input_shape": ["batch", "sequence", features],
            **verify(model, features, path),
            "versions": versions,
        }
    (HERE / "PROVENANCE.json").write_text(json.dumps(provenance, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
