"""Compensation of real structural prunes of reference models: the structural prune keeps its
parity, the compensated model validates with its updates listed, and it tracks the original
better than the structural prune (random weights and random data: mechanics, not accuracy)."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import pytest

from onnxprune.compensate import compensate
from onnxprune.runtime import RandomLoader
from onnxprune.session import PruneOptions, PruneSession
from onnxprune.stages import KeepReference, default_stages, run_stages
from onnxprune.targets import UniformRatio
from onnxprune.validate import validate
from tests.conftest import MODELS


def prune_keeping_original(path, ratio: float):
    """(normalized original, structural prune, keeps, plan) of one prune."""
    stages = default_stages()
    stages.insert(1, KeepReference())  # the normalized model, copied before anything is pruned
    session = run_stages(PruneSession.open(path, PruneOptions(UniformRatio(ratio))), stages)
    return session.reference, session.output, session.keeps, session.plan


def token_feeds(seed: int, count: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    feeds = []
    for _ in range(count):
        mask = np.ones((2, 12), np.int64)
        mask[1, 8:] = 0
        ids = rng.integers(0, 50, (2, 12)).astype(np.int64)
        feeds.append({"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})
    return feeds


CASES = {
    "resnet_dynamo.onnx": (
        None,
        lambda seed, count: RandomLoader(seeds=range(seed, seed + count), batch=2),
    ),
    "transformers/bert_dynamo.onnx": (
        {k: [2, 12] for k in ("input_ids", "attention_mask", "token_type_ids")},
        token_feeds,
    ),
}


@pytest.mark.parametrize("method", ["bias", "lsq"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_compensated_reference_model_validates(name: str, method: str) -> None:
    path = MODELS / name
    shapes, make_data = CASES[name]
    original, pruned, keeps, plan = prune_keeping_original(path, 0.4)
    structural = onnx.ModelProto()
    structural.CopyFrom(pruned)
    report = compensate(original, pruned, keeps, make_data(0, 16), method=method)
    assert report.applied > 0 and report.updates
    final_plan = dataclasses.replace(plan, updates=tuple(report.updates))
    held = make_data(1000, 4)
    checked = validate(path, pruned, final_plan, structural=structural, input_shapes=shapes, data=held)
    assert checked, str(checked)
    before = validate(path, structural, plan, input_shapes=shapes, data=make_data(1000, 4), fidelity=True)
    cos_before = min(o.cosine for o in before.fidelity.outputs)
    cos_after = min(o.cosine for o in checked.fidelity.outputs)
    assert cos_after > cos_before, (cos_before, cos_after)
