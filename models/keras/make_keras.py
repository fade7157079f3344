"""Export small Keras models to ONNX with tf2onnx.

Models (all with random, perturbed weights -- nothing is downloaded):

* ``functional_cnn``: a small functional CNN: Conv2D+BatchNormalization+ReLU blocks, a residual ``Add``,
  two branches (a 1x1 conv and a depthwise-separable one) joined by ``Concatenate``, a stride-2 conv with
  bias, ``GlobalAveragePooling2D`` and two ``Dense`` layers.
* ``mobilenetv2_035``: ``keras.applications.MobileNetV2(weights=None, alpha=0.35, input_shape=(96, 96, 3),
  classes=10)``.
* ``flatten_cnn``: Conv2D+BN+ReLU+MaxPool twice, ``Flatten`` and two ``Dense`` layers: the NHWC
  flatten order (h, w, c) that a pruner must respect when it removes a conv channel.

Weights: ``keras.utils.set_random_seed(0)`` and Keras' own initialisers, then every BatchNormalization
gets random gamma (1 + 0.2 N), beta (0.1 N), moving mean (0.1 N) and moving variance (U[0.5, 1.5)), and
every weight a 0.02 N offset, so that no bias is zero and no two tensors are equal (converters merge or
drop those; trained models have neither).

Conversion: ``tf2onnx.convert.from_keras(model, input_signature=(tf.TensorSpec((None, H, W, 3),
tf.float32, name="input"),), opset=17)``: NHWC float32 input with a dynamic batch.  The file is saved as
tf2onnx returns it (an IR version above 10 would be lowered to 10; tf2onnx writes 8 for opset 17).

Checks: ``onnx.checker.check_model(full_check=True)``, ONNX Runtime (CPUExecutionProvider) on a batch of 3
against ``model(x, training=False)``: ``max|ort - keras| / max(1, max|keras|) < 1e-4``.

Run from a venv with TensorFlow (not a dependency of onnxprune)::

    python -m venv /tmp/venv-tf
    /tmp/venv-tf/bin/pip install tensorflow==2.21.0 tf2onnx==1.17.0 onnx onnxruntime
    /tmp/venv-tf/bin/python models/keras/make_keras.py

It rewrites the ``.onnx`` files, ``PROVENANCE.json`` and the generated section of ``README.md``.  Weights
and graph structure are reproducible, but tf2onnx's optimisers name a few generated constants
(``const_fold_opt__N``, ``const_axes__N``, which of several equal Clip bounds survives) differently from run
to run, so two runs do not write byte-identical files.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import collections
import dataclasses
import json
import logging
import platform
import re
import sys
import warnings
from collections.abc import Callable
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
NUM_CLASSES = 10
OPSET = 17
MAX_IR_VERSION = 10
TOLERANCE = 1e-4  # relative: max abs diff / max(1, max |keras output|)
SIZE_LIMIT = 8 * 1024 * 1024


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


def conv_bn_relu(x, filters: int, kernel: int, name: str, strides: int = 1):
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(
        x
    )
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def functional_cnn() -> keras.Model:
    inp = keras.Input((64, 64, 3), name="input")
    x = conv_bn_relu(inp, 16, 3, "stem", strides=2)  # 32x32x16
    # residual block: conv-bn-relu, conv-bn, Add with the block input, ReLU
    y = conv_bn_relu(x, 16, 3, "res_a")
    y = layers.Conv2D(16, 3, padding="same", use_bias=False, name="res_b_conv")(y)
    y = layers.BatchNormalization(name="res_b_bn")(y)
    x = layers.ReLU(name="res_relu")(layers.Add(name="res_add")([x, y]))
    # two branches joined by Concatenate: a 1x1 conv and a depthwise-separable conv
    a = conv_bn_relu(x, 24, 1, "branch_a")
    b = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="branch_b_dw")(x)
    b = layers.BatchNormalization(name="branch_b_dw_bn")(b)
    b = layers.ReLU(name="branch_b_dw_relu")(b)
    b = conv_bn_relu(b, 16, 1, "branch_b_pw")
    x = layers.Concatenate(name="concat")([a, b])  # 40 channels
    # stride-2 conv with bias (and 'same' padding: asymmetric pads), then BN + ReLU
    x = layers.Conv2D(48, 3, strides=2, padding="same", use_bias=True, name="down_conv")(x)
    x = layers.BatchNormalization(name="down_bn")(x)
    x = layers.ReLU(name="down_relu")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dense(32, activation="relu", name="fc1")(x)
    out = layers.Dense(NUM_CLASSES, name="fc2")(x)
    return keras.Model(inp, out, name="functional_cnn")


def mobilenetv2_035() -> keras.Model:
    return keras.applications.MobileNetV2(
        weights=None, alpha=0.35, input_shape=(96, 96, 3), classes=NUM_CLASSES
    )


def flatten_cnn() -> keras.Model:
    inp = keras.Input((32, 32, 3), name="input")
    x = conv_bn_relu(inp, 8, 3, "block1")
    x = layers.MaxPooling2D(2, name="block1_pool")(x)  # 16x16x8
    x = conv_bn_relu(x, 16, 3, "block2")
    x = layers.MaxPooling2D(2, name="block2_pool")(x)  # 8x8x16
    x = layers.Flatten(name="flatten")(x)  # 1024, ordered (h, w, c)
    x = layers.Dense(32, activation="relu", name="fc1")(x)
    out = layers.Dense(NUM_CLASSES, name="fc2")(x)
    return keras.Model(inp, out, name="flatten_cnn")


@dataclasses.dataclass(frozen=True)
class Spec:
    build: Callable[[], keras.Model]
    input_hw: int
    built_as: str
    what: str
    patterns: str


MODELS: dict[str, Spec] = {
    "functional_cnn": Spec(
        functional_cnn,
        64,
        "functional_cnn() in make_keras.py",
        "Functional CNN: stem Conv2D(16, 3, s2)+BN+ReLU; residual block (Conv+BN+ReLU, Conv+BN, Add, ReLU); "
        "branch a Conv2D(24, 1)+BN+ReLU and branch b DepthwiseConv2D(3)+BN+ReLU -> Conv2D(16, 1)+BN+ReLU, "
        "Concatenate (40 channels); Conv2D(48, 3, s2, bias)+BN+ReLU; GlobalAveragePooling2D; Dense(32, relu); "
        "Dense(10).",
        "NHWC input transposed once; residual Add; Concatenate of a conv and a depthwise-separable branch; "
        "depthwise conv; conv with bias followed by BN; stride-2 'same' padding; Dense head.",
    ),
    "mobilenetv2_035": Spec(
        mobilenetv2_035,
        96,
        "keras.applications.MobileNetV2(weights=None, alpha=0.35, input_shape=(96, 96, 3), classes=10)",
        "Keras' own MobileNetV2 at alpha 0.35 (channels 16..112, last conv 1280 as Keras keeps it for alpha "
        "<= 1), 96x96 input, 10 classes with softmax, random weights.",
        "inverted residuals with ZeroPadding2D + 'valid' stride-2 depthwise convs (explicit Pad), ReLU6, "
        "residual Adds, Dense + Softmax head.",
    ),
    "flatten_cnn": Spec(
        flatten_cnn,
        32,
        "flatten_cnn() in make_keras.py",
        "Conv2D(8, 3)+BN+ReLU+MaxPool, Conv2D(16, 3)+BN+ReLU+MaxPool, Flatten (8x8x16 = 1024), Dense(32, relu), "
        "Dense(10).",
        "Keras Flatten of an NHWC map: the Dense input columns are ordered (h, w, c), so a conv channel owns "
        "every 16th column, not a contiguous block; Transpose back to NHWC before the Reshape.",
    ),
}


# --------------------------------------------------------------------------------------------
# Initialisation
# --------------------------------------------------------------------------------------------


def build(name: str) -> keras.Model:
    keras.utils.set_random_seed(SEED)
    model = MODELS[name].build()
    rng = np.random.default_rng(SEED + 1)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.gamma.assign((1.0 + 0.2 * rng.standard_normal(c)).astype("float32"))
            layer.beta.assign((0.1 * rng.standard_normal(c)).astype("float32"))
            layer.moving_mean.assign((0.1 * rng.standard_normal(c)).astype("float32"))
            layer.moving_variance.assign((0.5 + rng.random(c)).astype("float32"))
    for w in model.trainable_weights:
        w.assign(w.numpy() + (0.02 * rng.standard_normal(w.shape)).astype("float32"))
    return model


def check_distinct(model: keras.Model) -> None:
    seen: dict[tuple, str] = {}
    for w in model.weights:
        arr = w.numpy()
        if w.name in ("bias", "beta"):
            assert np.abs(arr).max() > 0, f"{w.path} is all zero"
        key = (arr.shape, arr.tobytes())
        assert key not in seen, f"{w.path} equals {seen[key]}"
        seen[key] = w.path


# --------------------------------------------------------------------------------------------
# Conversion and verification
# --------------------------------------------------------------------------------------------


def convert(model: keras.Model, name: str, path: Path) -> None:
    hw = MODELS[name].input_hw
    spec = (tf.TensorSpec((None, hw, hw, 3), tf.float32, name="input"),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=OPSET)
    if proto.ir_version > MAX_IR_VERSION:
        proto.ir_version = MAX_IR_VERSION
    onnx.save_model(proto, str(path), save_as_external_data=False)


def verify(model: keras.Model, name: str, path: Path) -> dict:
    onnx.checker.check_model(str(path), full_check=True)
    proto = onnx.load(str(path))
    assert not proto.functions, f"{path.name} has local functions"
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    hw = MODELS[name].input_hw
    x = np.random.default_rng(SEED + 3).standard_normal((3, hw, hw, 3)).astype("float32")
    expected = model(x, training=False).numpy()
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    assert got.shape == expected.shape, (got.shape, expected.shape)
    diff = float(np.abs(got - expected).max())
    scale = max(1.0, float(np.abs(expected).max()))
    assert diff / scale < TOLERANCE, f"{path.name}: max abs diff {diff} (scale {scale})"
    counts = collections.Counter(n.op_type for n in proto.graph.node)
    opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    return {
        "nodes": len(proto.graph.node),
        "ops": dict(sorted(counts.items())),
        "size": path.stat().st_size,
        "diff": diff,
        "ir": proto.ir_version,
        "opset": opset,
        "initializers": len(proto.graph.initializer),
        "input": sess.get_inputs()[0].name,
        "input_shape": [d if isinstance(d, int) else str(d) for d in sess.get_inputs()[0].shape],
        "output": sess.get_outputs()[0].name,
        "output_shape": [d if isinstance(d, int) else str(d) for d in sess.get_outputs()[0].shape],
    }


def versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "tf2onnx": tf2onnx.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
    }


def markdown(provenance: dict[str, dict], vers: dict[str, str]) -> str:
    lines = [
        "### Models",
        "",
        "| model | input (NHWC) | parameters | built as | what it is | patterns it exercises |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, spec in MODELS.items():
        p = provenance.get(f"{name}.onnx", {})
        hw = spec.input_hw
        lines.append(
            f"| `{name}` | Nx{hw}x{hw}x3 | {p.get('parameters', '?')} | `{spec.built_as}` | {spec.what} "
            f"| {spec.patterns} |"
        )
    lines += [
        "",
        "### Files",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()) + ".",
        "",
        "| file | opset | IR | nodes | initializers | size (bytes) | max diff | op types (count) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for fname, p in provenance.items():
        ops = ", ".join(f"{op} {n}" for op, n in p["op_types"].items())
        lines.append(
            f"| `{fname}` | {p['opset']} | {p['ir_version']} | {p['nodes']} | {p['initializers']} "
            f"| {p['size_bytes']} | {p['max_abs_diff']:.1e} | {ops} |"
        )
    lines.append("")
    lines.append(f"Total size of the .onnx files: {sum(p['size_bytes'] for p in provenance.values())} bytes.")
    return "\n".join(lines)


def update_readme(text: str) -> None:
    readme = HERE / "README.md"
    begin, end = "<!-- BEGIN GENERATED -->", "<!-- END GENERATED -->"
    if not readme.exists():
        return
    old = readme.read_text()
    if begin not in old or end not in old:
        return
    pattern = re.escape(begin) + ".*?" + re.escape(end)
    readme.write_text(re.sub(pattern, lambda _: f"{begin}\n{text}\n{end}", old, flags=re.S))


def main() -> int:
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    tf.get_logger().setLevel("ERROR")
    vers = versions()
    provenance: dict[str, dict] = {}
    for name, spec in MODELS.items():
        model = build(name)
        check_distinct(model)
        fname = f"{name}.onnx"
        path = HERE / fname
        convert(model, name, path)
        r = verify(model, name, path)
        provenance[fname] = {
            "model": name,
            "built_as": spec.built_as,
            "what": spec.what,
            "converter": "tf2onnx",
            "convert_call": (
                f"tf2onnx.convert.from_keras(model, input_signature=(tf.TensorSpec((None, {spec.input_hw}, "
                f'{spec.input_hw}, 3), tf.float32, name="input"),), opset={OPSET})'
            ),
            "opset": r["opset"],
            "ir_version": r["ir"],
            "layout": "NHWC",
            "input_shape": [1, spec.input_hw, spec.input_hw, 3],
            "dynamic_axes": {"0": r["input_shape"][0]},
            "input_name": r["input"],
            "onnx_input_shape": r["input_shape"],
            "output_name": r["output"],
            "output_shape": r["output_shape"],
            "parameters": int(model.count_params()),
            "nodes": r["nodes"],
            "initializers": r["initializers"],
            "op_types": r["ops"],
            "size_bytes": r["size"],
            "max_abs_diff": r["diff"],
            "seed": SEED,
            "versions": vers,
        }
        print(f"{fname:<24} nodes {r['nodes']:>4}  size {r['size']:>8}  diff {r['diff']:.1e}  ops {r['ops']}")
    (HERE / "PROVENANCE.json").write_text(json.dumps(provenance, indent=2) + "\n")
    total = sum(p.stat().st_size for p in HERE.iterdir() if p.is_file())
    print(f"\ntotal size of models/keras/: {total} bytes; versions: {vers}")
    update_readme(markdown(provenance, vers))
    assert total < SIZE_LIMIT, f"models/keras/ is {total} bytes, limit {SIZE_LIMIT}"
    return 0


if __name__ == "__main__":
    sys.exit(main())
