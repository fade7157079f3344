"""Pass infrastructure: a pass mutates a model and reports what it changed.

>>> manager = PassManager([InferShapes()])  # doctest: +SKIP
>>> results = manager.run(model)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import onnx

from onnxprune.analysis.flow import RuleContext
from onnxprune.errors import InternalError, OnnxPruneError
from onnxprune.graph import fresh_name  # noqa: F401  (passes name fresh tensors with it)


@dataclass
class PassResult:
    """What one pass did: whether it modified the model, and counters of what changed."""

    name: str
    modified: bool
    stats: dict[str, int] = field(default_factory=dict)


class Pass:
    """A graph pass: subclasses implement `call(model) -> PassResult` and mutate in place.

    A model the pass cannot handle is a `ModelError` naming the node and its op type; any other
    exception escaping a pass is a bug, reported as an `InternalError` naming the pass.

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

    def __init__(
        self, passes: list[Pass], max_rounds: int = 64, analyses: AnalysisCache | None = None
    ) -> None:
        self.passes = list(passes)
        self.max_rounds = max_rounds
        self.analyses = analyses

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
            try:
                result = p(model)
            except OnnxPruneError:
                raise
            except Exception as exc:
                raise pass_failure(f"{p.name} (in {self.name})", exc) from exc
            for key, value in result.stats.items():
                stats[key] = stats.get(key, 0) + value
            if result.modified and self.analyses is not None:
                self.analyses.invalidate()
            unchanged_run = 0 if result.modified else unchanged_run + 1
            modified |= result.modified
        stats["rounds"] = -(-steps // len(self.passes)) if self.passes else 0
        return PassResult(self.name, modified, stats)


class AnalysisCache:
    """Read-only analyses of the model passes run on (the `RuleContext` the channel rules and
    several passes read the graph through), computed when first asked for and kept until a pass
    reports that it changed the model: `PassManager` and `Repeat` call `invalidate` then.

    >>> cache = AnalysisCache()
    >>> ctx = cache.rule_context(model)  # doctest: +SKIP
    >>> cache.rule_context(model) is ctx  # doctest: +SKIP
    True
    """

    def __init__(self) -> None:
        self._model: onnx.ModelProto | None = None
        self._ctx: RuleContext | None = None
        self.built = 0
        """How many rule contexts this cache has built (for tests and tool-time studies)."""

    def rule_context(self, model: onnx.ModelProto) -> RuleContext:
        if self._ctx is None or self._model is not model:
            self._ctx, self._model = RuleContext(model), model
            self.built += 1
        return self._ctx

    def invalidate(self) -> None:
        self._ctx = self._model = None


class PassManager:
    """Runs passes in order. A model or usage error a pass raises goes through as it is; any other
    exception becomes an `InternalError` (exit code 4) naming the pass and those run before it,
    chained to the original. A pass that changed the model drops the cached `analyses`."""

    def __init__(self, passes: list[Pass], analyses: AnalysisCache | None = None) -> None:
        self.passes = list(passes)
        self.analyses = analyses

    def run(self, model: onnx.ModelProto) -> list[PassResult]:
        results: list[PassResult] = []
        for p in self.passes:
            try:
                results.append(p(model))
                if results[-1].modified and self.analyses is not None:
                    self.analyses.invalidate()
            except InternalError as exc:
                if exc.passes_run is not None:  # another manager's, complete
                    raise
                done = [r.name for r in results]
                if exc.pass_name is None:  # raised by the pass itself
                    raise pass_failure(p.name, exc, done) from exc
                cause = exc.__cause__ or exc  # a pass inside `p` (Repeat): name it
                raise pass_failure(exc.pass_name, cause, done) from cause
            except OnnxPruneError:
                raise
            except Exception as exc:
                raise pass_failure(p.name, exc, [r.name for r in results]) from exc
        return results


def pass_failure(name: str, exc: BaseException, done: Sequence[str] | None = None) -> InternalError:
    """The internal error for `exc` escaping pass `name`, after the passes `done` (unknown when
    None: a pass manager fills them in)."""
    before = "" if done is None else f"; passes run before: {', '.join(done) or 'none'}"
    return InternalError(
        f"internal error in pass {name} ({type(exc).__name__}: {exc}){before}. This is a bug in "
        "onnxprune, not in the model: please report it (rerun with --debug for the traceback)",
        pass_name=name,
        passes_run=None if done is None else tuple(done),
    )
