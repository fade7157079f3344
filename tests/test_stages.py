"""The stages over a session: declared reads and writes are checked, timings recorded, and the
analysis's rule context is reused until a pass changes the graph."""

from __future__ import annotations

import pytest

from onnxprune.passes import Pass, PassResult
from onnxprune.session import PruneOptions, PruneSession
from onnxprune.stages import (
    Analyze,
    Normalize,
    Score,
    Select,
    Stage,
    StageOrderError,
    default_stages,
    run_stages,
)
from onnxprune.targets import UniformRatio
from tests.conftest import MODELS

DEFAULT = MODELS / "default.onnx"


def _session() -> PruneSession:
    return PruneSession.open(DEFAULT, PruneOptions(UniformRatio(0.4)))


def test_the_default_stages_are_the_pipeline_in_order():
    names = [s.name for s in default_stages()]
    assert names == ["normalize", "analyze", "score", "select", "plan", "count", "apply", "cleanup", "report"]
    written: set[str] = {"model"}
    for stage in default_stages():  # every stage reads only what an earlier one wrote
        assert set(stage.reads) <= written, stage.name
        written |= set(stage.writes)


def test_a_stage_before_its_inputs_is_refused_naming_it():
    with pytest.raises(StageOrderError, match="stage select reads analysis, scores"):
        run_stages(_session(), [Normalize(), Select()])


def test_a_stage_that_does_not_write_what_it_declares_is_refused():
    class Lazy(Stage):
        name = "lazy"
        writes = ("plan",)

        def run(self, session):
            pass

    with pytest.raises(StageOrderError, match="stage lazy did not write plan"):
        run_stages(_session(), [Lazy()])


def test_stage_times_are_recorded_in_the_report():
    session = run_stages(_session(), default_stages())
    assert set(session.report.stage_seconds) == {"load", *(s.name for s in default_stages()[:-1])}
    assert all(t >= 0 for t in session.report.stage_seconds.values())


def test_the_rule_context_is_kept_until_a_pass_changes_the_graph():
    session = run_stages(_session(), [Normalize(), Analyze(), Score()])
    ctx = session.rule_context
    assert ctx is not None

    class Touch(Pass):
        def __init__(self, modified: bool) -> None:
            self.modified = modified

        def call(self, model):
            return PassResult(self.name, self.modified)

    session.run_passes([Touch(False)])
    assert session.rule_context is ctx
    session.run_passes([Touch(True)])
    assert session.rule_context is None
