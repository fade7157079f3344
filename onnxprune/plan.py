"""The plan: the contract between selection, rewriting and validation (shared/DESIGN.md).

A plan lists every slicing of every weight-like tensor, every attribute or shape rewrite,
the coupling groups with the channels they keep, every tensor whose values a pass changed after
slicing (`updates`, e.g. compensation) and every residual branch removed by depth pruning
(`dropped`). It is written with ``--plan`` and replayed with ``--apply-plan``; docs/plan-format.md
describes the JSON form and how validation treats each entry.

The `updates` and `dropped` keys are written only when non-empty, so a structural plan is byte
for byte what onnxprune wrote before they existed.

>>> s = TensorSlice(tensor="conv1.weight", axis=0, size=4, keep=(0, 2), role="out")
>>> Plan(slices=(s,)).to_json()["slices"][0]["keep"]
[0, 2]
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Literal

from onnxprune.errors import PlanError

PLAN_FORMAT = "onnxprune-plan"
PLAN_VERSION = 1

Role = Literal["in", "out"]


@dataclass(frozen=True)
class TensorSlice:
    """Keep indices `keep` (sorted, into the original axis of `size`) of `tensor` along `axis`."""

    tensor: str
    axis: int
    size: int
    keep: tuple[int, ...]
    role: Role = "out"

    def to_json(self) -> dict[str, Any]:
        return {
            "tensor": self.tensor,
            "axis": self.axis,
            "size": self.size,
            "keep": list(self.keep),
            "role": self.role,
        }


@dataclass(frozen=True)
class Rewrite:
    """A non-weight change: an attribute or shape constant of `node` from `before` to `after`."""

    node: str
    what: str
    before: Any
    after: Any

    def to_json(self) -> dict[str, Any]:
        return {"node": self.node, "what": self.what, "before": self.before, "after": self.after}


@dataclass(frozen=True)
class GroupDecision:
    """One coupling group: its size in channels (or heads), the kept units, its members."""

    id: int
    size: int
    keep: tuple[int, ...]
    members: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "size": self.size, "keep": list(self.keep), "members": list(self.members)}


@dataclass(frozen=True)
class TensorUpdate:
    """Tensor `tensor` (a weight name of the input model, or a new one) had its values changed by
    pass `by` after slicing; `shape` is its shape in the output model. Validation checks it by
    shape, not values.

    >>> TensorUpdate("conv2.bias", (64,), "compensate-bias").to_json()
    {'tensor': 'conv2.bias', 'shape': [64], 'by': 'compensate-bias'}
    """

    tensor: str
    shape: tuple[int, ...]
    by: str

    def to_json(self) -> dict[str, Any]:
        return {"tensor": self.tensor, "shape": list(self.shape), "by": self.by}


@dataclass(frozen=True)
class DroppedBranch:
    """A residual branch removed by depth pruning: the Add node `add` that summed it and the branch
    tensor `branch` it read. `extra` keeps any further keys of the JSON entry, written back as read
    (depth pruning writes `input`, the branch's input x; plans without it stay readable).

    >>> DroppedBranch("Add_7", "layer3.1.out").to_json()
    {'add': 'Add_7', 'branch': 'layer3.1.out'}
    """

    add: str
    branch: str
    extra: tuple[tuple[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"add": self.add, "branch": self.branch, **dict(self.extra)}


@dataclass(frozen=True)
class Plan:
    """A complete pruning plan. `slices` has at most one entry per (tensor, axis); `updates` at
    most one per tensor.

    >>> plan = Plan(updates=(TensorUpdate("b2", (2,), "compensate-bias"),))
    >>> Plan.from_json(plan.to_json()) == plan, "dropped" in plan.to_json()
    (True, False)
    """

    slices: tuple[TensorSlice, ...] = ()
    rewrites: tuple[Rewrite, ...] = ()
    groups: tuple[GroupDecision, ...] = field(default=())
    updates: tuple[TensorUpdate, ...] = ()
    dropped: tuple[DroppedBranch, ...] = ()

    @property
    def updated(self) -> frozenset[str]:
        """Names of the tensors listed in `updates`."""
        return frozenset(u.tensor for u in self.updates)

    @property
    def removes_anything(self) -> bool:
        return any(len(s.keep) < s.size for s in self.slices)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "format": PLAN_FORMAT,
            "version": PLAN_VERSION,
            "slices": [s.to_json() for s in self.slices],
            "rewrites": [r.to_json() for r in self.rewrites],
            "groups": [g.to_json() for g in self.groups],
        }
        # only when non-empty: a structural plan stays byte-identical to the format before them
        if self.updates:
            data["updates"] = [u.to_json() for u in self.updates]
        if self.dropped:
            data["dropped"] = [d.to_json() for d in self.dropped]
        return data

    def save(self, path: str | os.PathLike) -> None:
        """Write the plan as JSON to `path`."""
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(self.to_json(), fh, indent=1)
            fh.write("\n")

    @classmethod
    def from_json(cls, data: Any, *, source: str = "<plan>") -> Plan:
        """Read a plan from its JSON form, checking the format; raises PlanError."""
        if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT:
            raise PlanError(f'{source}: not an onnxprune plan (missing "format": "{PLAN_FORMAT}")')
        if data.get("version") != PLAN_VERSION:
            raise PlanError(
                f"{source}: plan version {data.get('version')!r} is not supported (expected {PLAN_VERSION})"
            )
        try:
            slices = tuple(
                TensorSlice(
                    tensor=str(s["tensor"]),
                    axis=int(s["axis"]),
                    size=int(s["size"]),
                    keep=tuple(int(i) for i in s["keep"]),
                    role=s.get("role", "out"),
                )
                for s in data.get("slices", [])
            )
            rewrites = tuple(
                Rewrite(
                    node=str(r["node"]), what=str(r["what"]), before=r.get("before"), after=r.get("after")
                )
                for r in data.get("rewrites", [])
            )
            groups = tuple(
                GroupDecision(
                    id=int(g["id"]),
                    size=int(g["size"]),
                    keep=tuple(int(i) for i in g["keep"]),
                    members=tuple(str(m) for m in g.get("members", [])),
                )
                for g in data.get("groups", [])
            )
            updates = tuple(
                TensorUpdate(
                    tensor=str(u["tensor"]), shape=tuple(int(d) for d in u["shape"]), by=str(u["by"])
                )
                for u in data.get("updates", [])
            )
            dropped = tuple(
                DroppedBranch(
                    add=str(d["add"]),
                    branch=str(d["branch"]),
                    extra=tuple((str(k), v) for k, v in d.items() if k not in ("add", "branch")),
                )
                for d in data.get("dropped", [])
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise PlanError(f"{source}: malformed plan entry ({exc!r})") from exc
        _check_updates(updates, source)
        seen: set[tuple[str, int]] = set()
        for s in slices:
            if s.role not in ("in", "out"):
                raise PlanError(f"{source}: slice of {s.tensor} has role {s.role!r}, expected 'in' or 'out'")
            if (s.tensor, s.axis) in seen:
                raise PlanError(f"{source}: two slices of {s.tensor} axis {s.axis}")
            seen.add((s.tensor, s.axis))
            if list(s.keep) != sorted(set(s.keep)) or (s.keep and not 0 <= s.keep[0] <= s.keep[-1] < s.size):
                raise PlanError(
                    f"{source}: keep of {s.tensor} axis {s.axis} is not sorted unique "
                    f"indices in [0, {s.size})"
                )
        return cls(slices=slices, rewrites=rewrites, groups=groups, updates=updates, dropped=dropped)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Plan:
        """Read a plan file; raises PlanError if it is missing or malformed."""
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        except OSError as exc:
            raise PlanError(f"{path}: cannot read plan ({exc.strerror})") from exc
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise PlanError(f"{path}: plan is not valid JSON ({exc})") from exc
        return cls.from_json(data, source=str(path))


def _check_updates(updates: tuple[TensorUpdate, ...], source: str) -> None:
    """PlanError for a tensor listed twice in `updates` or a negative dim in its shape."""
    seen: set[str] = set()
    for u in updates:
        if u.tensor in seen:
            raise PlanError(f"{source}: two updates of {u.tensor}")
        seen.add(u.tensor)
        if any(d < 0 for d in u.shape):
            raise PlanError(f"{source}: update of {u.tensor} has shape {list(u.shape)} with a negative dim")
