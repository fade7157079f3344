"""Export a small JAX model (Dense on a 3-D input) to ONNX through jax2tf and tf2onnx.

``dense_seq`` is written in plain ``jax.numpy`` on a ``[batch, sequence, 16]`` input: an FFN
``relu(x @ W1 + b1) @ W2 + b2`` (16 -> 48 -> 16), a residual add with the input, a layer norm
written out (mean, variance, ``rsqrt``, scale and shift), a mean over the sequence and a head
``@ W3 + b3`` (16 -> 10). Weights: ``numpy.random.default_rng(0)``, normal * 0.3 (biases * 0.1).

Conversion: ``jax2tf.convert(fn, polymorphic_shapes=["(b, s, 16)"], with_gradient=True,
native_serialization=False, enable_xla=False)`` in a ``tf.function`` (weights are constants
closed over), then ``tf2onnx.convert.from_function(..., input_signature=(tf.TensorSpec((None,
None, 16), tf.float32, name="x"),), opset=17)``. JAX >= 0.5 ignores ``native_serialization=False``
and emits one ``XlaCallModule`` op (StableHLO), which tf2onnx 1.17 cannot convert; so this uses
JAX 0.4.38, whose graph lowering (``enable_xla=False``) emits plain TF ops.
``with_gradient=True`` because ``with_gradient=False`` adds a ``PreventGradient`` op that
tf2onnx 1.17 does not convert. Checks:
``onnx.checker`` (full) and ONNX Runtime against the JAX function on [3, 7, 16]:
``max|ort - jax| / max(1, max|jax|) < 1e-4``.

Run from a venv with TensorFlow and JAX 0.4.38 (not dependencies of onnxprune)::

    python -m venv /tmp/venv-jax
    /tmp/venv-jax/bin/pip install tensorflow==2.21.0 tf2onnx==1.17.0 onnx onnxruntime
    /tmp/venv-jax/bin/pip install --no-deps --target /tmp/jaxold jax==0.4.38 jaxlib==0.4.38
    PYTHONPATH=/tmp/jaxold /tmp/venv-jax/bin/python models/jax/make_jax_seq.py

(``--no-deps`` keeps TensorFlow's numpy and ml_dtypes; jax 0.4.38 runs with them.) It rewrites
the ``.onnx`` file and ``PROVENANCE.json``.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import collections
import json
import platform
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import onnx
import onnxruntime as ort
import tensorflow as tf
import tf2onnx
from jax.experimental import jax2tf

HERE = Path(__file__).resolve().parent
SEED = 0
OPSET = 17
TOLERANCE = 1e-4
FEATURES, HIDDEN, CLASSES = 16, 48, 10
CONVERT_CALL = (
    'jax2tf.convert(fn, polymorphic_shapes=["(b, s, 16)"], with_gradient=True, '
    "native_serialization=False, enable_xla=False); tf2onnx.convert.from_function(tf.function(...), "
    'input_signature=(tf.TensorSpec((None, None, 16), tf.float32, name="x"),), opset=17)'
)


def weights() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(SEED)

    def normal(shape, scale):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    return {
        "w1": normal((FEATURES, HIDDEN), 0.3),
        "b1": normal((HIDDEN,), 0.1),
        "w2": normal((HIDDEN, FEATURES), 0.3),
        "b2": normal((FEATURES,), 0.1),
        "gamma": 1 + normal((FEATURES,), 0.1),
        "beta": normal((FEATURES,), 0.1),
        "w3": normal((FEATURES, CLASSES), 0.3),
        "b3": normal((CLASSES,), 0.1),
    }


def dense_seq(p: dict[str, np.ndarray]):
    def fn(x):
        h = jax.nn.relu(x @ p["w1"] + p["b1"])
        h = h @ p["w2"] + p["b2"] + x
        mean = jnp.mean(h, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(h - mean), axis=-1, keepdims=True)
        h = (h - mean) * jax.lax.rsqrt(var + 1e-5) * p["gamma"] + p["beta"]
        return jnp.mean(h, axis=1) @ p["w3"] + p["b3"]

    return fn


def export(name: str, fn) -> dict:
    converted = jax2tf.convert(
        fn,
        polymorphic_shapes=[f"(b, s, {FEATURES})"],
        with_gradient=True,
        native_serialization=False,
        enable_xla=False,
    )
    spec = (tf.TensorSpec((None, None, FEATURES), tf.float32, name="x"),)
    tf_fn = tf.function(converted, input_signature=spec, autograph=False)
    tf_ops = sorted({op.type for op in tf_fn.get_concrete_function().graph.get_operations()})
    model, _ = tf2onnx.convert.from_function(tf_fn, input_signature=spec, opset=OPSET)
    path = HERE / f"{name}.onnx"
    onnx.save(model, path)
    onnx.checker.check_model(onnx.load(path), full_check=True)
    x = np.random.default_rng(1).standard_normal((3, 7, FEATURES)).astype(np.float32)
    expected = np.asarray(fn(x))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    diff = float(np.max(np.abs(got - expected)))
    assert diff / max(1.0, float(np.max(np.abs(expected)))) < TOLERANCE, (name, diff)
    params = sum(
        int(np.prod(t.dims)) for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT
    )
    return {
        "built_as": f"{name}() in make_jax_seq.py",
        "convert_call": CONVERT_CALL,
        "input_shape": ["batch", "sequence", FEATURES],
        "tf_ops": tf_ops,
        "nodes": len(model.graph.node),
        "op_types": dict(sorted(collections.Counter(n.op_type for n in model.graph.node).items())),
        "size_bytes": path.stat().st_size,
        "max_abs_diff": diff,
        "opset": OPSET,
        "ir_version": model.ir_version,
        "parameters": params,
        "versions": {
            "python": platform.python_version(),
            "jax": jax.__version__,
            "tensorflow": tf.__version__,
            "tf2onnx": tf2onnx.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": ort.__version__,
            "numpy": np.__version__,
        },
    }


def main() -> None:
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    provenance = {"dense_seq.onnx": export("dense_seq", dense_seq(weights()))}
    (HERE / "PROVENANCE.json").write_text(json.dumps(provenance, indent=2) + "\n")
    print(json.dumps(provenance, indent=2))


if __name__ == "__main__":
    main()
