"""Hugging Face architectures the repository does not ship: tiny configs at random initialisation,
exported with both PyTorch exporters (models/transformers/make_transformers.py does the export and
its checks), pruned at 0.4 with default options and validated at batch 1, sequence 8 (images 32x32).

    HF_HUB_OFFLINE=1 /tmp/venv-tv/bin/python benchmarks/hf_sweep.py [--cache /tmp/hf-sweep] [NAME ...]

Prints one JSON line per export and writes `hf_sweep.md`. Attention is SDPA where the model
supports it, else eager (`EAGER`). Weights get make_transformers' small random offsets.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "models" / "transformers"))

import make_transformers as mt
import onnxruntime
import torch
import transformers as T
from machine import cpu_model
from sweep_rows import prune_row, table
from torch import nn

import onnxprune


class EncoderWrapper(nn.Module):
    """An encoder called with input ids and attention mask only (no token types, no cache flag)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(
            input_ids=input_ids, attention_mask=attention_mask, return_dict=True
        ).last_hidden_state


mt.WRAPPERS["encoder"] = EncoderWrapper
mt.INPUT_NAMES["encoder"] = ["input_ids", "attention_mask"]

E = dict(
    vocab_size=100,
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=128,
    max_position_embeddings=70,
)
DEC = dict(
    vocab_size=100,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=64,
    use_cache=False,
    bos_token_id=0,
    eos_token_id=0,
)
V = dict(image_size=32, num_channels=3)
S = {
    "albert": (
        T.AlbertModel,
        T.AlbertConfig,
        dict(E, embedding_size=32),
        "encoder",
        {"add_pooling_layer": False},
    ),
    "distilbert": (
        T.DistilBertModel,
        T.DistilBertConfig,
        dict(vocab_size=100, dim=64, n_layers=2, n_heads=4, hidden_dim=128, max_position_embeddings=64),
        "encoder",
        {},
    ),
    "roberta": (
        T.RobertaModel,
        T.RobertaConfig,
        dict(E, pad_token_id=1),
        "encoder",
        {"add_pooling_layer": False},
    ),
    "electra": (T.ElectraModel, T.ElectraConfig, dict(E, embedding_size=32), "encoder", {}),
    "deberta_v2": (
        T.DebertaV2Model,
        T.DebertaV2Config,
        dict(E, relative_attention=True, position_buckets=16, pos_att_type=["p2c", "c2p"]),
        "encoder",
        {},
    ),
    "mpnet": (T.MPNetModel, T.MPNetConfig, dict(E), "encoder", {"add_pooling_layer": False}),
    "squeezebert": (
        T.SqueezeBertModel,
        T.SqueezeBertConfig,
        dict(
            E,
            embedding_size=64,
            q_groups=2,
            k_groups=2,
            v_groups=2,
            post_attention_groups=2,
            intermediate_groups=4,
            output_groups=4,
        ),
        "encoder",
        {},
    ),
    "mobilebert": (
        T.MobileBertModel,
        T.MobileBertConfig,
        dict(E, embedding_size=32, intra_bottleneck_size=32, true_hidden_size=32, num_feedforward_networks=2),
        "encoder",
        {"add_pooling_layer": False},
    ),
    "opt": (
        T.OPTModel,
        T.OPTConfig,
        dict(
            vocab_size=100,
            hidden_size=64,
            num_hidden_layers=2,
            ffn_dim=128,
            num_attention_heads=4,
            max_position_embeddings=64,
            word_embed_proj_dim=64,
            use_cache=False,
            bos_token_id=0,
            eos_token_id=0,
            pad_token_id=1,
        ),
        "decoder",
        {},
    ),
    "gpt_neo": (
        T.GPTNeoModel,
        T.GPTNeoConfig,
        dict(
            vocab_size=100,
            hidden_size=64,
            num_layers=2,
            num_heads=4,
            intermediate_size=128,
            max_position_embeddings=64,
            attention_types=[[["global", "local"], 1]],
            window_size=8,
            use_cache=False,
            bos_token_id=0,
            eos_token_id=0,
        ),
        "decoder",
        {},
    ),
    "bloom": (
        T.BloomModel,
        T.BloomConfig,
        dict(
            vocab_size=100,
            hidden_size=64,
            n_layer=2,
            n_head=4,
            use_cache=False,
            bos_token_id=0,
            eos_token_id=0,
        ),
        "decoder",
        {},
    ),
    "phi": (T.PhiModel, T.PhiConfig, dict(DEC, partial_rotary_factor=0.5), "decoder", {}),
    "qwen2": (T.Qwen2Model, T.Qwen2Config, dict(DEC, num_key_value_heads=2), "decoder", {}),
    "mistral": (
        T.MistralModel,
        T.MistralConfig,
        dict(DEC, num_key_value_heads=2, head_dim=16, sliding_window=None),
        "decoder",
        {},
    ),
    "gemma": (T.GemmaModel, T.GemmaConfig, dict(DEC, num_key_value_heads=1, head_dim=16), "decoder", {}),
    "falcon": (
        T.FalconModel,
        T.FalconConfig,
        dict(
            vocab_size=100,
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            new_decoder_architecture=False,
            multi_query=True,
            use_cache=False,
            bos_token_id=0,
            eos_token_id=0,
        ),
        "decoder",
        {},
    ),
    "deit": (
        T.DeiTModel,
        T.DeiTConfig,
        dict(
            V, patch_size=8, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128
        ),
        "vision",
        {"add_pooling_layer": False},
    ),
    "clip_vision": (
        T.CLIPVisionModel,
        T.CLIPVisionConfig,
        dict(
            V, patch_size=8, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128
        ),
        "vision",
        {},
    ),
    "dinov2": (
        T.Dinov2Model,
        T.Dinov2Config,
        dict(V, patch_size=8, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, mlp_ratio=2),
        "vision",
        {},
    ),
    "swin": (
        T.SwinModel,
        T.SwinConfig,
        dict(V, patch_size=4, embed_dim=32, depths=[1, 1], num_heads=[2, 4], window_size=4),
        "vision",
        {"add_pooling_layer": False},
    ),
    "segformer": (
        T.SegformerModel,
        T.SegformerConfig,
        dict(
            V,
            num_encoder_blocks=2,
            depths=[1, 1],
            sr_ratios=[2, 1],
            hidden_sizes=[16, 32],
            patch_sizes=[7, 3],
            strides=[4, 2],
            num_attention_heads=[1, 2],
            mlp_ratios=[2, 2],
        ),
        "vision",
        {},
    ),
}
EAGER = {"deberta_v2", "mpnet", "squeezebert", "gpt_neo", "bloom", "swin", "segformer"}


def study(name: str, cache: Path, ratio: float) -> list[dict]:
    model_cls, config_cls, config, kind, kwargs = S[name]
    spec = mt.Spec(model_cls, config_cls, config, "eager" if name in EAGER else "sdpa", kind, kwargs, name)
    shapes = (
        {"pixel_values": [1, 3, 32, 32]} if kind == "vision" else {n: [1, 8] for n in mt.INPUT_NAMES[kind]}
    )
    rows = []
    for exporter in mt.EXPORTERS:
        row: dict = {"model": name, "exporter": exporter}
        path = cache / f"{name}_{exporter}.onnx"
        try:
            if not path.exists():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    mt.export(spec, exporter, path)
        except Exception:
            row["error"] = "export: " + traceback.format_exc().strip().splitlines()[-1][:160]
            rows.append(row)
            continue
        rows.append(prune_row(row, path, ratio, input_shapes=shapes))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=list(S))
    parser.add_argument("--ratio", type=float, default=0.4)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/hf-sweep"))
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("hf_sweep.md"))
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    mt.check_distinct = lambda model: None  # tiny configs repeat values (ALBERT shares its layers)
    torch.set_num_threads(2)
    args.cache.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.names:
        for row in study(name, args.cache, args.ratio):
            print(json.dumps(row), flush=True)
            rows.append(row)
    lines = [
        "# Hugging Face architectures at random initialisation, both exporters",
        "",
        f"Machine: {cpu_model()}, torch {torch.__version__}, transformers {T.__version__}, ONNX Runtime "
        f"{onnxruntime.__version__}, onnxprune {onnxprune.__version__}. "
        f"Command: `python benchmarks/hf_sweep.py` (ratio {args.ratio}, default options; "
        "configs in the script).",
        "",
        "",
    ]
    lines += table(rows)
    args.out.write_text("\n".join([*lines, ""]))


if __name__ == "__main__":
    main()
