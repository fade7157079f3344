"""Keep a module's layers consistent with their sliced parameters.

After slicing, each layer's size attributes must say what its tensors hold: ``Conv*d``
in/out channels and ``groups``, ``Linear`` in/out features, ``BatchNorm`` features, Hugging
Face ``Conv1D``'s ``nf``, and the head counts and head-derived sizes of attention modules
(BERT/ViT ``num_attention_heads``/``all_head_size``, GPT-2 ``num_heads``/``split_size``, Llama
``num_key_value_groups``). Head counts follow from the projections' output sizes: onnxprune
removes whole heads, so the head size stays. ``nn.MultiheadAttention`` assumes its inner width
equals its embedding width and cannot hold fewer heads: a plan that changes it is refused.

>>> import torch
>>> lin = torch.nn.Linear(4, 3)
>>> lin.weight = torch.nn.Parameter(lin.weight[:2])
>>> lin.bias = torch.nn.Parameter(lin.bias[:2])
>>> refresh_layer(lin, {}, Journal()), lin.out_features
(True, 2)
"""

from __future__ import annotations

from typing import Any

from torch import nn

from onnxprune.errors import PlanError

HEAD_SIZE_ATTRS = ("attention_head_size", "head_dim")
QUERY_NAMES = ("query", "q_proj", "q", "c_attn", "qkv")
KEY_NAMES = ("key", "k_proj", "k")
HEAD_COUNT_ATTRS = ("num_attention_heads", "num_heads", "n_heads")


class Journal:
    """Every attribute, parameter and buffer change, so that a failed application is undone."""

    def __init__(self) -> None:
        self._undo: list[tuple[Any, str, str, Any]] = []

    def set(self, obj: Any, name: str, value: Any, kind: str = "attr") -> bool:
        """Set `name` of `obj` (an attribute, or a module's parameter/buffer by `kind`); True if
        it changed."""
        store = {"param": "_parameters", "buffer": "_buffers"}.get(kind)
        old = getattr(obj, store)[name] if store else getattr(obj, name)
        if store is None and old == value:
            return False
        self._undo.append((obj, name, kind, old))
        if store:
            getattr(obj, store)[name] = value
        else:
            setattr(obj, name, value)
        return True

    def rollback(self) -> None:
        for obj, name, kind, old in reversed(self._undo):
            store = {"param": "_parameters", "buffer": "_buffers"}.get(kind)
            if store:
                getattr(obj, store)[name] = old
            else:
                setattr(obj, name, old)
        self._undo.clear()


def _conv(m: nn.modules.conv._ConvNd, groups: int | None, journal: Journal) -> bool:
    w = m.weight.shape
    old_in, old_out = m.in_channels, m.out_channels
    if groups is None:
        groups = m.groups
        if m.groups > 1 and m.groups == old_in:  # depthwise: one group per kept input channel
            groups = w[0] if m.transposed else w[0] // (old_out // m.groups)
    changed = journal.set(m, "groups", groups)
    if m.transposed:
        changed |= journal.set(m, "in_channels", w[0])
        changed |= journal.set(m, "out_channels", w[1] * groups)
    else:
        changed |= journal.set(m, "out_channels", w[0])
        changed |= journal.set(m, "in_channels", w[1] * groups)
    return changed or (old_in, old_out) != (m.in_channels, m.out_channels)


def refresh_layer(m: nn.Module, groups: dict[int, int], journal: Journal) -> bool:
    """Set `m`'s size attributes from its tensors; `groups` maps id(conv) -> its new group
    count where the plan rewrote it. True if anything changed."""
    if isinstance(m, nn.modules.conv._ConvNd):
        return _conv(m, groups.get(id(m)), journal)
    if isinstance(m, nn.Linear):
        changed = journal.set(m, "out_features", m.weight.shape[0])
        return journal.set(m, "in_features", m.weight.shape[1]) or changed
    if isinstance(m, nn.modules.batchnorm._NormBase):
        size = (m.weight if m.weight is not None else m.running_mean).shape[0]
        return journal.set(m, "num_features", size)
    if isinstance(m, nn.LayerNorm) and m.weight is not None:
        return journal.set(m, "normalized_shape", tuple(m.weight.shape))
    if isinstance(m, nn.Embedding):
        return journal.set(m, "embedding_dim", m.weight.shape[1])
    if type(m).__name__ == "Conv1D" and hasattr(m, "nf"):  # Hugging Face GPT-2: weight [in, out]
        changed = journal.set(m, "nf", m.weight.shape[1])
        return (journal.set(m, "nx", m.weight.shape[0]) if hasattr(m, "nx") else False) or changed
    if isinstance(m, nn.MultiheadAttention):
        return _check_mha(m)
    return False


def _check_mha(m: nn.MultiheadAttention) -> bool:
    e = m.embed_dim
    shapes = [p.shape for p in (m.in_proj_weight, m.q_proj_weight, m.out_proj.weight) if p is not None]
    if any(e not in s for s in shapes) or m.out_proj.weight.shape != (e, e):
        raise PlanError(
            "nn.MultiheadAttention keeps its inner width equal to embed_dim: it cannot hold "
            f"pruned heads (weights now {[tuple(s) for s in shapes]}); "
            "exclude its projections from pruning or use a module with a separate head count"
        )
    return False


def _out_size(m: nn.Module) -> int | None:
    w = getattr(m, "weight", None)
    if w is None:
        return None
    return w.shape[1] if type(m).__name__ == "Conv1D" else w.shape[0]


def refresh_heads(name: str, m: nn.Module, journal: Journal) -> dict[str, int] | None:
    """Head counts of an attention module from its projections' sizes; the counts it holds."""
    size = next((getattr(m, a) for a in HEAD_SIZE_ATTRS if isinstance(getattr(m, a, None), int)), None)
    query = next((getattr(m, a) for a in QUERY_NAMES if isinstance(getattr(m, a, None), nn.Module)), None)
    if size is None or query is None or _out_size(query) is None:
        return None
    inner = _out_size(query)
    if type(query).__name__ == "Conv1D" and hasattr(m, "split_size"):  # GPT-2: fused q, k, v
        proj = getattr(m, "c_proj", None)
        inner = proj.weight.shape[0] if proj is not None else inner // 3
        journal.set(m, "split_size", inner)
    if inner % size:
        raise PlanError(f"attention module '{name}': {inner} channels are not whole heads of size {size}")
    heads = inner // size
    counts = {"heads": heads}
    for attr in HEAD_COUNT_ATTRS:
        if isinstance(getattr(m, attr, None), int):
            journal.set(m, attr, heads)
    if isinstance(getattr(m, "all_head_size", None), int):
        journal.set(m, "all_head_size", inner)
    key = next((getattr(m, a) for a in KEY_NAMES if isinstance(getattr(m, a, None), nn.Module)), None)
    if key is not None and _out_size(key) is not None:
        kv = _out_size(key) // size
        counts["kv_heads"] = kv
        if isinstance(getattr(m, "num_key_value_heads", None), int):
            journal.set(m, "num_key_value_heads", kv)
        if isinstance(getattr(m, "num_key_value_groups", None), int):
            if heads % kv:
                raise PlanError(f"attention module '{name}': {heads} heads do not share {kv} key/value heads")
            journal.set(m, "num_key_value_groups", heads // kv)
    counts["head_size"] = size
    return counts


def refresh_feature_sizes(m: nn.Module, linear_in: dict[int, int], journal: Journal) -> bool:
    """A module that flattens into a child Linear and keeps the width in an integer attribute
    named ``*features*`` (torchcrepe's ``Crepe.in_features`` feeds ``reshape(-1, in_features)``)
    gets the child's new width. True if anything changed."""
    changed = False
    for child in m.children():
        old = linear_in.get(id(child))
        if old is None or old == child.in_features:
            continue
        for attr, value in vars(m).items():
            if "features" in attr and isinstance(value, int) and value == old:
                changed |= journal.set(m, attr, child.in_features)
    return changed


def refresh_config(module: nn.Module, heads: dict[str, dict[str, int]], journal: Journal) -> None:
    """Write uniform head counts into a Hugging Face config that can state them exactly.

    Only a config with an explicit ``head_dim`` field (Llama and its kin) describes pruned heads
    faithfully (``num_attention_heads``, ``num_key_value_heads``, ``head_dim``); BERT, GPT-2 and
    ViT derive the head size from ``hidden_size / num_attention_heads``, so their config is left
    describing the unpruned model, and the modules hold the pruned sizes. Layers with different
    head counts leave the config as it is too."""
    counts = {tuple(sorted(c.items())) for c in heads.values()}
    if len(counts) != 1:
        return
    found = dict(next(iter(counts)))
    for sub in module.modules():
        config = getattr(sub, "config", None)
        if config is None or not hasattr(config, "num_attention_heads") or not hasattr(config, "head_dim"):
            continue
        if getattr(config, "head_dim", None) not in (None, found["head_size"]):
            continue
        journal.set(config, "head_dim", found["head_size"])
        journal.set(config, "num_attention_heads", found["heads"])
        if "kv_heads" in found and hasattr(config, "num_key_value_heads"):
            journal.set(config, "num_key_value_heads", found["kv_heads"])
