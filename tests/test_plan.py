"""The plan's JSON form: round trips, `updates` and `dropped`, and byte-identity without them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from onnxprune.errors import PlanError
from onnxprune.plan import DroppedBranch, GroupDecision, Plan, Rewrite, TensorSlice, TensorUpdate

STRUCTURAL = Plan(
    slices=(TensorSlice("w1", 0, 4, (0, 2, 3), "out"), TensorSlice("w2", 1, 4, (0, 2, 3), "in")),
    rewrites=(Rewrite("Reshape_1", "shape", [1, 4], [1, 3]),),
    groups=(GroupDecision(0, 4, (0, 2, 3), ("w1:0", "w2:1")),),
)

# what Plan.save wrote for STRUCTURAL before `updates` and `dropped` existed
STRUCTURAL_TEXT = """{
 "format": "onnxprune-plan",
 "version": 1,
 "slices": [
  {
   "tensor": "w1",
   "axis": 0,
   "size": 4,
   "keep": [
    0,
    2,
    3
   ],
   "role": "out"
  },
  {
   "tensor": "w2",
   "axis": 1,
   "size": 4,
   "keep": [
    0,
    2,
    3
   ],
   "role": "in"
  }
 ],
 "rewrites": [
  {
   "node": "Reshape_1",
   "what": "shape",
   "before": [
    1,
    4
   ],
   "after": [
    1,
    3
   ]
  }
 ],
 "groups": [
  {
   "id": 0,
   "size": 4,
   "keep": [
    0,
    2,
    3
   ],
   "members": [
    "w1:0",
    "w2:1"
   ]
  }
 ]
}
"""


def test_a_plan_without_updates_or_dropped_is_written_as_before(tmp_path: Path) -> None:
    STRUCTURAL.save(tmp_path / "plan.json")
    assert (tmp_path / "plan.json").read_text() == STRUCTURAL_TEXT
    assert Plan.load(tmp_path / "plan.json") == STRUCTURAL


def test_updates_and_dropped_round_trip(tmp_path: Path) -> None:
    plan = Plan(
        slices=STRUCTURAL.slices,
        updates=(TensorUpdate("b2", (2,), "compensate-bias"), TensorUpdate("w2", (2, 3, 3, 3), "refit")),
        dropped=(DroppedBranch("Add_7", "layer3.out", (("block", 3),)),),
    )
    plan.save(tmp_path / "plan.json")
    data = json.loads((tmp_path / "plan.json").read_text())
    assert data["updates"] == [
        {"tensor": "b2", "shape": [2], "by": "compensate-bias"},
        {"tensor": "w2", "shape": [2, 3, 3, 3], "by": "refit"},
    ]
    assert data["dropped"] == [{"add": "Add_7", "branch": "layer3.out", "block": 3}]
    back = Plan.load(tmp_path / "plan.json")
    assert back == plan and back.updated == {"b2", "w2"}
    assert list(data)[-2:] == ["updates", "dropped"]  # after the structural keys


def only_updates() -> dict:
    return {"format": "onnxprune-plan", "version": 1, "updates": [{"tensor": "b", "shape": [3], "by": "x"}]}


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        (lambda d: d["updates"][0].pop("by"), r"malformed plan entry \(KeyError\('by'\)\)"),
        (lambda d: d["updates"][0].update(shape=3), r"malformed plan entry"),
        (lambda d: d["updates"].append(dict(d["updates"][0])), r"two updates of b"),
        (lambda d: d["updates"][0].update(shape=[-1]), r"update of b has shape \[-1\]"),
        (lambda d: d.update(dropped=[{"add": "A"}]), r"malformed plan entry \(KeyError\('branch'\)\)"),
        (lambda d: d.update(dropped=["A"]), r"malformed plan entry"),
    ],
)
def test_malformed_updates_and_dropped_are_plan_errors(change, pattern) -> None:
    data = only_updates()
    change(data)
    with pytest.raises(PlanError, match=pattern):
        Plan.from_json(data, source="p.json")
