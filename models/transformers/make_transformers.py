"""Export small Hugging Face ``transformers`` models with both PyTorch ONNX exporters.

Every model is built from a small config with random weights (never ``from_pretrained``; the hub is
never contacted, ``HF_HUB_OFFLINE=1``):

* ``bert``        ``BertModel`` (SDPA attention), inputs input_ids, attention_mask, token_type_ids;
* ``bert_eager``  the same ``BertModel`` config with ``attn_implementation="eager"``;
* ``gpt2``        ``GPT2Model`` (fused ``c_attn`` Conv1D then ``split``), input_ids, attention_mask;
* ``llama_gqa``   ``LlamaModel`` with grouped-query attention (4 query heads, 2 key/value heads), RoPE,
  RMSNorm and the SwiGLU MLP, input_ids, attention_mask;
* ``vit``         ``ViTModel`` (32x32 images, 8x8 patches, 3 channels), pixel_values.

All of them have 2 layers, hidden size 64, 4 attention heads of head_dim 16, vocabulary 100 and at most
64 positions (see ``SPECS``).  The model is initialised with a fixed seed and then every parameter gets a
small random offset, so that no bias is zero and no two tensors are identical (the exporters merge or
drop those; trained models have neither).  The pooler is not built (``add_pooling_layer=False``); the
exported module is a small wrapper returning ``last_hidden_state`` only, ``use_cache=False``, eval mode.

Each model is exported twice from the same weights:

* dynamo:      ``torch.onnx.export(wrapper, args, path, dynamo=True, opset_version=18,
  external_data=False, dynamic_shapes=...)`` with dynamic batch and sequence axes (batch only for ViT)
  -> ``<name>_dynamo.onnx``;
* TorchScript: ``torch.onnx.export(wrapper, args, path, dynamo=False, opset_version=17, input_names=...,
  output_names=["last_hidden_state"], dynamic_axes=...)`` with the same dynamic axes
  -> ``<name>_torchscript.onnx``.

The example used for export is a batch of 2 sequences of 8 tokens (text; the second one right-padded,
so the attention mask holds zeros) or a batch of 2 images.  Files are re-saved through
``onnx.load``/``onnx.save_model`` without external data and with IR version <= 10 (lowered if higher,
so that older ONNX Runtime releases load them); nothing else is changed.  Each file is checked with
``onnx.checker.check_model(full_check=True)`` and run in ONNX Runtime (CPUExecutionProvider) at three
(batch, sequence) shapes, (1, 8), (2, 5), (3, 16) (ViT: batches 1, 2, 3), with padded attention masks,
and compared with torch: ``max|ort - torch| / max(1, max|torch|) < 1e-4``.

Run from a venv with torch and transformers (neither is a dependency of onnxprune)::

    /tmp/venv-tv/bin/pip install torch==2.14.1 transformers==5.23.0 onnx onnxscript onnxruntime numpy
    HF_HUB_OFFLINE=1 /tmp/venv-tv/bin/python models/transformers/make_transformers.py           # all
    HF_HUB_OFFLINE=1 /tmp/venv-tv/bin/python models/transformers/make_transformers.py gpt2      # some
    /tmp/venv-tv/bin/python models/transformers/make_transformers.py --inspect [FILE.onnx ...]  # print
        # the nodes of the first attention block of each file (what README.md describes)
    /tmp/venv-tv/bin/python models/transformers/make_transformers.py --bench [OUT.onnx]
        # BERT-base size (12 layers, hidden 768, 12 heads, FFN 3072), dynamo only, written outside the
        # repository (default /tmp/onnxprune-bench/bert_base_dynamo.onnx) for benchmarks

It rewrites the files, ``PROVENANCE.json`` (entries of models not rebuilt are kept) and the generated
section of ``README.md``.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import collections
import dataclasses
import json
import logging
import platform
import re
import sys
import tempfile
import traceback
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import onnxscript
import torch
import transformers
from onnx import numpy_helper
from torch import nn
from transformers import (
    BertConfig,
    BertModel,
    GPT2Config,
    GPT2Model,
    LlamaConfig,
    LlamaModel,
    ViTConfig,
    ViTModel,
)

HERE = Path(__file__).resolve().parent
SEED = 0
MAX_IR_VERSION = 10
DYNAMO_OPSET = 18
TORCHSCRIPT_OPSET = 17
TOLERANCE = 1e-4  # relative: max abs diff / max(1, max |torch output|)
EXPORTERS = ("dynamo", "torchscript")
EXAMPLE_SHAPE = (2, 8)  # (batch, sequence) of the export example; batch 2 so nothing specialises to 1
CHECK_SHAPES = ((1, 8), (2, 5), (3, 16))  # (batch, sequence) the files are run at; ViT uses the batches
MAX_SEQ = 64
SIZE_LIMIT = 8 * 1024 * 1024
BENCH_PATH = Path("/tmp/onnxprune-bench/bert_base_dynamo.onnx")


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Spec:
    model_cls: type
    config_cls: type
    config: dict[str, Any]
    attn: str  # attn_implementation
    kind: str  # "bert" | "decoder" | "vision"
    model_kwargs: dict[str, Any]
    what: str


BERT_CONFIG = dict(
    vocab_size=100,
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=256,
    max_position_embeddings=MAX_SEQ,
    type_vocab_size=2,
)

SPECS: dict[str, Spec] = {
    "bert": Spec(
        BertModel,
        BertConfig,
        BERT_CONFIG,
        "sdpa",
        "bert",
        {"add_pooling_layer": False},
        "BERT encoder, post-LN, separate q/k/v Linear(64, 64) with bias, GELU FFN 64->256->64, "
        "SDPA attention.",
    ),
    "bert_eager": Spec(
        BertModel,
        BertConfig,
        BERT_CONFIG,
        "eager",
        "bert",
        {"add_pooling_layer": False},
        "The same BERT config with attn_implementation='eager' (explicit matmul/softmax/matmul).",
    ),
    "gpt2": Spec(
        GPT2Model,
        GPT2Config,
        dict(
            vocab_size=100,
            n_positions=MAX_SEQ,
            n_embd=64,
            n_layer=2,
            n_head=4,
            n_inner=256,
            use_cache=False,
            bos_token_id=0,
            eos_token_id=0,
        ),
        "sdpa",
        "decoder",
        {},
        "GPT-2 decoder, pre-LN, fused c_attn Conv1D(64, 192) split into q/k/v, c_proj Conv1D, "
        "GELU(tanh) FFN 64->256->64, causal SDPA attention.",
    ),
    "llama_gqa": Spec(
        LlamaModel,
        LlamaConfig,
        dict(
            vocab_size=100,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            max_position_embeddings=MAX_SEQ,
            use_cache=False,
            bos_token_id=0,
            eos_token_id=0,
        ),
        "sdpa",
        "decoder",
        {},
        "Llama decoder, RMSNorm, GQA (4 query heads, 2 key/value heads, head_dim 16), RoPE, bias-free "
        "q/k/v/o, SwiGLU MLP gate/up 64->128, down 128->64, causal SDPA attention.",
    ),
    "vit": Spec(
        ViTModel,
        ViTConfig,
        dict(
            image_size=32,
            patch_size=8,
            num_channels=3,
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=256,
        ),
        "sdpa",
        "vision",
        {"add_pooling_layer": False},
        "ViT encoder, Conv 8x8/8 patch embedding (16 patches + CLS = 17 tokens), pre-LN, separate q/k/v "
        "Linear with bias, GELU FFN 64->256->64, SDPA attention.",
    ),
}

BENCH_SPEC = Spec(
    BertModel,
    BertConfig,
    dict(
        vocab_size=30522,
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        max_position_embeddings=512,
        type_vocab_size=2,
    ),
    "sdpa",
    "bert",
    {"add_pooling_layer": False},
    "BERT-base size (bert-base-uncased config), random weights.",
)


class BertWrapper(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> torch.Tensor:
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            return_dict=True,
        )
        return out.last_hidden_state


class DecoderWrapper(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.model(
            input_ids=input_ids, attention_mask=attention_mask, use_cache=False, return_dict=True
        )
        return out.last_hidden_state


class VisionWrapper(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values, return_dict=True).last_hidden_state


WRAPPERS = {"bert": BertWrapper, "decoder": DecoderWrapper, "vision": VisionWrapper}
INPUT_NAMES = {
    "bert": ["input_ids", "attention_mask", "token_type_ids"],
    "decoder": ["input_ids", "attention_mask"],
    "vision": ["pixel_values"],
}


def make_config(spec: Spec, attn: str):
    config = spec.config_cls(**spec.config, attn_implementation=attn)
    assert config._attn_implementation == attn, (config._attn_implementation, attn)
    return config


def build(spec: Spec, attn: str | None = None) -> nn.Module:
    """Construct the model deterministically, perturb every parameter and return the wrapper in eval mode."""
    torch.manual_seed(SEED)
    config = make_config(spec, attn or spec.attn)
    model = spec.model_cls(config, **spec.model_kwargs)
    gen = torch.Generator().manual_seed(SEED + 1)
    with torch.no_grad():
        for param in model.parameters():
            # small offsets on top of the initialisation: no zero bias, no two equal tensors
            param.add_(0.02 * torch.randn(param.shape, generator=gen))
    return WRAPPERS[spec.kind](model).eval()


def check_distinct(model: nn.Module) -> None:
    """Fail when a bias is all zero or two parameters/buffers are identical (exporters merge those)."""
    seen: dict[tuple, str] = {}
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if name.endswith("original_inv_freq"):  # RoPE keeps a copy of inv_freq for dynamic rope types
            continue
        if t.dtype.is_floating_point:
            if name.endswith("bias"):
                assert t.abs().max() > 0, f"{name} is all zero"
            key = (tuple(t.shape), tuple(t.flatten().tolist()))
            assert key not in seen, f"{name} equals {seen[key]}"
            seen[key] = name


def make_inputs(spec: Spec, batch: int, seq: int, seed: int) -> dict[str, torch.Tensor]:
    """Inputs by name.  Text: random ids; row b > 0 of the attention mask is right-padded by 2*b tokens
    (at least one token kept); token_type_ids are 0 for the first half, 1 for the second half."""
    gen = torch.Generator().manual_seed(seed)
    if spec.kind == "vision":
        c = spec.config["num_channels"]
        s = spec.config["image_size"]
        return {"pixel_values": torch.randn((batch, c, s, s), generator=gen)}
    vocab = spec.config["vocab_size"]
    ids = torch.randint(0, vocab, (batch, seq), generator=gen)
    mask = torch.ones((batch, seq), dtype=torch.int64)
    for b in range(1, batch):
        pad = min(2 * b, seq - 1)
        mask[b, seq - pad :] = 0
    inputs = {"input_ids": ids, "attention_mask": mask}
    if spec.kind == "bert":
        tt = torch.zeros((batch, seq), dtype=torch.int64)
        tt[:, seq // 2 :] = 1
        inputs["token_type_ids"] = tt
    return inputs


def dynamic_axes(spec: Spec) -> dict[str, dict[int, str]]:
    """Dynamic axes per input and for the output ``last_hidden_state``."""
    if spec.kind == "vision":
        return {"pixel_values": {0: "batch"}, "last_hidden_state": {0: "batch"}}
    axes = {name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES[spec.kind]}
    axes["last_hidden_state"] = {0: "batch", 1: "sequence"}
    return axes


# --------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------


def first_error_lines(exc: BaseException, n: int = 6) -> str:
    lines = [ln for ln in "".join(traceback.format_exception_only(type(exc), exc)).splitlines() if ln.strip()]
    return " | ".join(lines[:n])


def _export_once(wrapper: nn.Module, spec: Spec, exporter: str, raw: Path, opset: int) -> None:
    inputs = make_inputs(spec, *EXAMPLE_SHAPE, seed=SEED + 2)
    args = tuple(inputs.values())
    axes = dynamic_axes(spec)
    if exporter == "dynamo":
        batch = torch.export.Dim("batch", min=1, max=1024)
        seq = torch.export.Dim("sequence", min=1, max=MAX_SEQ)
        dims = {"batch": batch, "sequence": seq}
        dynamic_shapes = {name: {ax: dims[d] for ax, d in axes[name].items()} for name in inputs}
        torch.onnx.export(
            wrapper,
            args,
            str(raw),
            dynamo=True,
            opset_version=opset,
            external_data=False,
            dynamic_shapes=dynamic_shapes,
            verbose=False,
        )
    else:
        torch.onnx.export(
            wrapper,
            args,
            str(raw),
            dynamo=False,
            opset_version=opset,
            input_names=list(inputs),
            output_names=["last_hidden_state"],
            dynamic_axes=axes,
        )


def export(spec: Spec, exporter: str, path: Path) -> tuple[nn.Module, dict]:
    """Export to ``path``; returns the exported wrapper and notes for PROVENANCE.json.

    Attempts in order: the documented call; the same with attn_implementation='eager'; the dynamo
    exporter with the other opset (17/18).  Every failure is recorded."""
    opset = DYNAMO_OPSET if exporter == "dynamo" else TORCHSCRIPT_OPSET
    other = TORCHSCRIPT_OPSET if exporter == "dynamo" else DYNAMO_OPSET
    attempts = [(spec.attn, opset)]
    if spec.attn != "eager":
        attempts.append(("eager", opset))
    attempts.append((spec.attn, other))
    errors: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / path.name
        for attn, op in attempts:
            wrapper = build(spec, attn)
            check_distinct(wrapper)
            try:
                _export_once(wrapper, spec, exporter, raw, op)
            except Exception as exc:
                errors.append(f"attn_implementation={attn}, opset {op}: {first_error_lines(exc)}")
                print(f"  {path.name}: export failed ({errors[-1][:400]})", flush=True)
                continue
            break
        else:
            raise RuntimeError(f"{path.name}: every export attempt failed: {errors}")
        # onnx.load pulls in any external data, so the file saved below is self-contained
        proto = onnx.load(str(raw))
    notes: dict[str, Any] = {
        "attn_implementation": attn,
        "opset_requested": op,
        "ir_version_written": proto.ir_version,
    }
    if errors:
        notes["export_failures"] = errors
    if proto.ir_version > MAX_IR_VERSION:
        proto.ir_version = MAX_IR_VERSION
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(proto, str(path), save_as_external_data=False)
    return wrapper, notes


def check_shapes(spec: Spec) -> list[tuple[int, int]]:
    if spec.kind == "vision":
        return [(b, 0) for b, _ in CHECK_SHAPES]
    return list(CHECK_SHAPES)


def verify(wrapper: nn.Module, spec: Spec, path: Path, full_check: bool = True) -> dict:
    onnx.checker.check_model(str(path), full_check=full_check)
    proto = onnx.load(str(path))
    assert proto.ir_version <= MAX_IR_VERSION, proto.ir_version
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer), (
        f"{path.name} has external data"
    )
    assert not list(path.parent.glob(path.name + ".data")), f"{path.name} left a .data file"
    assert not proto.functions, f"{path.name} has local functions"
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    onnx_inputs = [i.name for i in sess.get_inputs()]
    runs = []
    for k, (batch, seq) in enumerate(check_shapes(spec)):
        inputs = make_inputs(spec, batch, seq, seed=SEED + 3 + k)
        with torch.no_grad():
            expected = wrapper(**inputs).numpy()
        feeds = {n: inputs[n].numpy() for n in onnx_inputs}  # TorchScript may drop an unused input
        got = sess.run(None, feeds)[0]
        assert got.shape == expected.shape, (path.name, got.shape, expected.shape)
        diff = float(np.abs(got - expected).max())
        scale = max(1.0, float(np.abs(expected).max()))
        assert diff / scale < TOLERANCE, f"{path.name} at {batch}x{seq}: max abs diff {diff} (scale {scale})"
        runs.append(
            {"shape": list(inputs[onnx_inputs[0]].shape), "max_abs_diff": diff, "rel_err": diff / scale}
        )
    counts = collections.Counter(n.op_type for n in proto.graph.node)
    opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))

    def shape_of(v) -> list:
        return [d if isinstance(d, int) else str(d) for d in v.shape]

    return {
        "nodes": len(proto.graph.node),
        "ops": dict(sorted(counts.items())),
        "size": path.stat().st_size,
        "runs": runs,
        "ir": proto.ir_version,
        "opset": opset,
        "initializers": len(proto.graph.initializer),
        "inputs": [{"name": i.name, "dtype": i.type, "shape": shape_of(i)} for i in sess.get_inputs()],
        "outputs": [{"name": o.name, "dtype": o.type, "shape": shape_of(o)} for o in sess.get_outputs()],
    }


def versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "onnx": onnx.__version__,
        "onnxscript": onnxscript.__version__,
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
    }


def export_call(spec: Spec, exporter: str, opset: int) -> str:
    names = INPUT_NAMES[spec.kind]
    axes = dynamic_axes(spec)
    if exporter == "dynamo":
        dims = {
            "batch": 'Dim("batch", min=1, max=1024)',
            "sequence": f'Dim("sequence", min=1, max={MAX_SEQ})',
        }
        shapes = ", ".join(
            f'"{n}": {{' + ", ".join(f"{a}: {dims[d]}" for a, d in axes[n].items()) + "}" for n in names
        )
        return (
            f"torch.onnx.export(wrapper, ({', '.join(names)}), path, dynamo=True, opset_version={opset}, "
            f"external_data=False, dynamic_shapes={{{shapes}}})"
        )
    return (
        f"torch.onnx.export(wrapper, ({', '.join(names)}), path, dynamo=False, opset_version={opset}, "
        f"input_names={names}, output_names=['last_hidden_state'], dynamic_axes={json.dumps(axes)})"
    )


# --------------------------------------------------------------------------------------------
# Inspection: the nodes of one attention block
# --------------------------------------------------------------------------------------------


class GraphIndex:
    def __init__(self, proto: onnx.ModelProto) -> None:
        self.graph = proto.graph
        self.nodes = list(proto.graph.node)
        self.inits = {t.name: t for t in proto.graph.initializer}
        self.producer: dict[str, int] = {}
        self.consumers: dict[str, list[int]] = collections.defaultdict(list)
        for i, n in enumerate(self.nodes):
            for o in n.output:
                self.producer[o] = i
            for x in n.input:
                if x:
                    self.consumers[x].append(i)
        self.inputs = {i.name for i in proto.graph.input}

    def const(self, name: str) -> np.ndarray | None:
        if name in self.inits:
            return numpy_helper.to_array(self.inits[name])
        i = self.producer.get(name)
        if i is not None and self.nodes[i].op_type == "Constant":
            for a in self.nodes[i].attribute:
                if a.name == "value":
                    return numpy_helper.to_array(a.t)
        return None

    def is_weight_matmul(self, i: int) -> bool:
        n = self.nodes[i]
        if n.op_type not in ("MatMul", "Gemm"):
            return False
        w = self.const(n.input[1]) if len(n.input) > 1 else None
        return w is not None and w.ndim == 2 and w.size > 16

    def expr(self, name: str, depth: int = 6) -> str:
        """A short expression for how a (shape) tensor is computed."""
        c = self.const(name)
        if c is not None:
            if c.size <= 8:
                return str(c.tolist())
            return f"<{name} {list(c.shape)}>"
        if name in self.inputs:
            return name
        i = self.producer.get(name)
        if i is None:
            return name
        n = self.nodes[i]
        if depth <= 0:
            return f"{n.op_type}(...)"
        args = ", ".join(self.expr(x, depth - 1) for x in n.input if x)
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        extra = ""
        if n.op_type == "Shape" and attrs:
            extra = ", " + ", ".join(f"{k}={v}" for k, v in attrs.items())
        if n.op_type in ("Shape",):
            src = self.producer.get(n.input[0])
            what = self.nodes[src].op_type if src is not None else n.input[0]
            return f"Shape({what}{extra})"
        if n.op_type in (
            "Gather",
            "Unsqueeze",
            "Squeeze",
            "Concat",
            "Cast",
            "Slice",
            "Mul",
            "Div",
            "Add",
            "Sub",
            "Equal",
            "Where",
            "ConstantOfShape",
            "Range",
            "Expand",
            "Reshape",
        ):
            return f"{n.op_type}({args})"
        return f"{n.op_type}(...)"

    def describe(self, i: int) -> str:
        n = self.nodes[i]
        attrs = {}
        for a in n.attribute:
            if a.name == "value":
                continue
            v = onnx.helper.get_attribute_value(a)
            if isinstance(v, bytes):
                v = v.decode()
            attrs[a.name] = v
        parts = []
        for k, x in enumerate(n.input):
            if not x:
                continue
            c = self.const(x)
            if c is not None:
                parts.append(str(c.tolist()) if c.size <= 8 else f"W{list(c.shape)}")
            elif n.op_type in ("Reshape", "Expand", "Slice", "Tile", "ConstantOfShape") and k >= 1:
                parts.append(self.expr(x))
            elif x in self.inputs:
                parts.append(x)
            else:
                p = self.producer.get(x)
                if p is not None and len(self.nodes[p].output) > 1:
                    parts.append(f"%{p}:{list(self.nodes[p].output).index(x)}")
                else:
                    parts.append(f"%{p}" if p is not None else x)
        a = (" " + " ".join(f"{k}={v}" for k, v in attrs.items())) if attrs else ""
        return f"%{i:<4} {n.op_type}{a}({', '.join(parts)})"

    def attention_block(self, which: int = 0) -> list[int]:
        """Nodes of the ``which``-th attention: from its Softmax, the descendants up to the output
        projection (the first MatMul/Gemm with a weight, inclusive), and the ancestors of all of these
        back to the q/k/v projections (inclusive; not further up their activation input)."""
        softmaxes = [i for i, n in enumerate(self.nodes) if n.op_type == "Softmax"]
        s = softmaxes[which]
        keep = {s}
        stack = [s]
        while stack:
            i = stack.pop()
            if i != s and (self.is_weight_matmul(i) or self.nodes[i].op_type == "Shape"):
                continue  # Shape outputs feed size arithmetic all over the graph: do not follow them
            for o in self.nodes[i].output:
                for c in self.consumers.get(o, []):
                    if c not in keep:
                        keep.add(c)
                        stack.append(c)
        stack = list(keep)
        while stack:
            i = stack.pop()
            if self.is_weight_matmul(i):
                continue
            for x in self.nodes[i].input:
                p = self.producer.get(x)
                if p is None or p in keep or self.nodes[p].op_type in ("Constant", "Softmax"):
                    continue
                keep.add(p)
                stack.append(p)
        return sorted(keep)


def inspect(paths: list[Path]) -> None:
    for path in paths:
        proto = onnx.load(str(path))
        g = GraphIndex(proto)
        block = g.attention_block(0)
        first = min(i for i in block if g.is_weight_matmul(i))
        before = [i for i in block if i < first]
        print(f"==== {path.name}: {len(g.nodes)} nodes; first attention block: {len(block)} nodes")
        ops = collections.Counter(g.nodes[i].op_type for i in before)
        print(
            f"  ({len(before)} nodes before the first projection (mask, positions, RoPE tables): "
            + ", ".join(f"{op} {k}" for op, k in sorted(ops.items()))
            + ")"
        )
        for i in block:
            if i >= first:
                print("  " + g.describe(i))
        reshapes = [i for i, n in enumerate(g.nodes) if n.op_type == "Reshape"]
        print(f"  -- all {len(reshapes)} Reshape targets:")
        seen = collections.Counter(g.expr(g.nodes[i].input[1]) for i in reshapes)
        for e, k in seen.items():
            print(f"     {k} x {e}")
        print()


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def markdown(provenance: dict[str, dict]) -> str:
    lines = [
        "### Models",
        "",
        "| name | class | attention | config | parameters | inputs | what it is |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, spec in SPECS.items():
        entry = next((p for p in provenance.values() if p["name"] == name), None)
        params = entry["parameters"] if entry else "?"
        cfg = ", ".join(f"{k}={v}" for k, v in spec.config.items())
        lines.append(
            f"| `{name}` | `{spec.model_cls.__name__}` | {spec.attn} | {cfg} | {params} | "
            f"{', '.join(INPUT_NAMES[spec.kind])} | {spec.what} |"
        )
    vers = sorted({json.dumps(p["versions"], sort_keys=True) for p in provenance.values()})
    lines += ["", "### Files", ""]
    for v in vers:
        lines.append("Versions: " + ", ".join(f"{k} {val}" for k, val in json.loads(v).items()) + ".")
    lines += [
        "",
        "| file | exporter | opset | IR | nodes | initializers | size (bytes) | max rel err (3 shapes) "
        "| op types (count) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for fname, p in provenance.items():
        ops = ", ".join(f"{op} {n}" for op, n in p["op_types"].items())
        err = max(r["rel_err"] for r in p["checks"])
        lines.append(
            f"| `{fname}` | {p['exporter']} | {p['opset']} | {p['ir_version']} | {p['nodes']} "
            f"| {p['initializers']} | {p['size_bytes']} | {err:.1e} | {ops} |"
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


def provenance_entry(
    name: str, spec: Spec, exporter: str, wrapper: nn.Module, notes: dict, r: dict, vers: dict
) -> dict:
    config = make_config(spec, notes["attn_implementation"])
    return {
        "name": name,
        "model_class": f"transformers.{spec.model_cls.__name__}",
        "config_class": f"transformers.{spec.config_cls.__name__}",
        "config": dict(spec.config),
        "config_full": json.loads(config.to_json_string(use_diff=False)),
        "model_kwargs": spec.model_kwargs,
        "attn_implementation": notes["attn_implementation"],
        "wrapper": f"{type(wrapper).__name__}: forward({', '.join(INPUT_NAMES[spec.kind])}) "
        "-> last_hidden_state",
        "exporter": exporter,
        "export_call": export_call(spec, exporter, notes["opset_requested"]),
        **({"export_failures": notes["export_failures"]} if "export_failures" in notes else {}),
        "opset": r["opset"],
        "ir_version": r["ir"],
        "ir_version_written_by_exporter": notes["ir_version_written"],
        "dynamic_axes_requested": {
            k: {str(a): d for a, d in v.items()}
            for k, v in dynamic_axes(spec).items()
            if exporter == "torchscript" or k in INPUT_NAMES[spec.kind]  # dynamo: inputs only
        },
        "dynamic_axes": {  # as written in the file: symbolic dims of the graph inputs and outputs
            v["name"]: {str(a): d for a, d in enumerate(v["shape"]) if isinstance(d, str)}
            for v in r["inputs"] + r["outputs"]
        },
        "export_example": {k: list(v.shape) for k, v in make_inputs(spec, *EXAMPLE_SHAPE, SEED + 2).items()},
        "inputs": r["inputs"],
        "outputs": r["outputs"],
        "checks": r["runs"],
        "parameters": sum(p.numel() for p in wrapper.parameters()),
        "nodes": r["nodes"],
        "initializers": r["initializers"],
        "op_types": r["ops"],
        "size_bytes": r["size"],
        "seed": SEED,
        "perturbation": (
            "every parameter += 0.02 * randn (torch.Generator seed 1) after init with torch.manual_seed(0)"
        ),
        "versions": vers,
    }


def bench(path: Path) -> int:
    vers = versions()
    print(f"bert_base (dynamo only) -> {path}", flush=True)
    wrapper, notes = export(BENCH_SPEC, "dynamo", path)
    r = verify(wrapper, BENCH_SPEC, path)
    entry = provenance_entry("bert_base", BENCH_SPEC, "dynamo", wrapper, notes, r, vers)
    entry.pop("config_full")
    path.with_suffix(".json").write_text(json.dumps(entry, indent=2) + "\n")
    print(
        f"  {path}: nodes {r['nodes']}  size {r['size']}  params {entry['parameters']}  "
        f"max rel err {max(x['rel_err'] for x in r['runs']):.1e}"
    )
    return 0


def main(argv: list[str]) -> int:
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    if argv[:1] == ["--inspect"]:
        inspect([Path(p) for p in argv[1:]] or sorted(HERE.glob("*.onnx")))
        return 0
    if argv[:1] == ["--bench"]:
        return bench(Path(argv[1]) if len(argv) > 1 else BENCH_PATH)
    names = argv or list(SPECS)
    unknown = [a for a in names if a not in SPECS]
    if unknown:
        print(f"unknown models: {unknown}; known: {list(SPECS)}")
        return 2
    vers = versions()
    prov_path = HERE / "PROVENANCE.json"
    old = json.loads(prov_path.read_text()) if prov_path.exists() else {}
    fresh: dict[str, dict] = {}
    for name in names:
        spec = SPECS[name]
        print(f"{name} ...", flush=True)
        for exporter in EXPORTERS:
            fname = f"{name}_{exporter}.onnx"
            path = HERE / fname
            wrapper, notes = export(spec, exporter, path)
            r = verify(wrapper, spec, path)
            fresh[fname] = provenance_entry(name, spec, exporter, wrapper, notes, r, vers)
            errs = " ".join(f"{x['rel_err']:.1e}" for x in r["runs"])
            print(
                f"  {fname:<34} nodes {r['nodes']:>5}  size {r['size']:>8}  rel err {errs}  "
                f"attn={notes['attn_implementation']} opset={r['opset']} ir={r['ir']}",
                flush=True,
            )
    merged = {k: v for k, v in old.items() if v.get("name") not in names}
    merged.update(fresh)
    order = {f"{a}_{e}.onnx": i for i, (a, e) in enumerate((a, e) for a in SPECS for e in EXPORTERS)}
    provenance = dict(sorted(merged.items(), key=lambda kv: order.get(kv[0], len(order))))
    prov_path.write_text(json.dumps(provenance, indent=2) + "\n")
    total = sum(p.stat().st_size for p in HERE.glob("*.onnx"))
    print(f"\ntotal size of models/transformers/*.onnx: {total} bytes; versions: {vers}")
    update_readme(markdown(provenance))
    assert total < SIZE_LIMIT, f"models/transformers/ is {total} bytes, limit {SIZE_LIMIT}"
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
