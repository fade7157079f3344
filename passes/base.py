"""Pass infrastructure: a pass mutates a model and reports what it changed.

>>> manager = PassManager([InferShapes()])  # doctest: +SKIP
>>> results = manager.run(model)  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field

import onnx

from onnxprune.errors import ModelError
from onnxprune.graph import fresh_name  # noqa: F401  (passes name fresh tensors with it)


@dataclass
class PassResult:
    """What one pass did: whether it modified the model, and counters of what changed."""

    name: str
    modified: bool
    stats: dict[str, int] = field(default_factory=dict)


class Pass:
    """A graph pass: subclasses implement `call(model) -> PassResult` and mutate in place.

    `idempotent` passes (running one twice in a row changes nothing the second time) are not
    run again by `Repeat` on a model no pass has changed since their own last run.
    """

    idempotent = False

    @property
    def name(self) -> str:
        return type(self).__name__

    def call(self, model: onnx.ModelProto) -> PassResult:
        raise NotImplementedError

    def __call__(self, model: onnx.ModelProto) -> PassResult:
        return self.call(model)


class Repeat(Pass):
    """Run `passes` in turn, cycling, until every one of them has run once more without changing
    the model (a fixed point of all of them), or `max_rounds` cycles have run.

    A pass that runs on a model no other pass has changed since its own last run is not run
    again: the last passes of a cycle that changed nothing need no second cycle after them.
    """

    def __init__(self, passes: list[Pass], max_rounds: int = 64) -> None:
        self.passes = list(passes)
        self.max_rounds = max_rounds

    def call(self, model: onnx.ModelProto) -> PassResult:
        stats: dict[str, int] = {}
        modified = False
        unchanged_run = 0  # passes run (or skipped) in a row, up to now, that changed nothing
        steps = 0
        while unchanged_run < len(self.passes) and steps < self.max_rounds * len(self.passes):
            p = self.passes[steps % len(self.passes)]
            steps += 1
            if p.idempotent and steps > len(self.passes) and unchanged_run >= len(self.passes) - 1:
                unchanged_run += 1  # the model is as this pass itself left it
                continue
            result = p(model)
            for key, value in result.stats.items():
                stats[key] = stats.get(key, 0) + value
            unchanged_run = 0 if result.modified else unchanged_run + 1
            modified |= result.modified
        stats["rounds"] = -(-steps // len(self.passes)) if self.passes else 0
        return PassResult(self.name, modified, stats)


class PassManager:
    """Runs passes in order; a failure is re-raised naming the pass and those run before it."""

    def __init__(self, passes: list[Pass]) -> None:
        self.passes = list(passes)

    def run(self, model: onnx.ModelProto) -> list[PassResult]:
        results: list[PassResult] = []
        for p in self.passes:
            try:
                results.append(p(model))
            except ModelError:
                raise
            except Exception as exc:
                done = ", ".join(r.name for r in results) or "none"
                raise ModelError(
                    f"pass {p.name} failed ({type(exc).__name__}: {exc}); passes run before: {done}"
                ) from exc
        return results
