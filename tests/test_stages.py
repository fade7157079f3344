"""The stages over a session: declared reads and writes are checked, timings recorded, and the
analysis's rule context is reused until a pass changes the graph."""

from __future__ import annotations

import re

import pytest

from onnxprune.calibration import CalibrationData
from onnxprune.data import open_data
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
from tests.conftest import MODELS, ROOT

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
    ctx = session.analyses.rule_context(session.model)
    built = session.analyses.built

    class Touch(Pass):
        def __init__(self, modified: bool) -> None:
            self.modified = modified

        def call(self, model):
            return PassResult(self.name, self.modified)

    session.run_passes([Touch(False)])
    assert session.analyses.rule_context(session.model) is ctx
    session.run_passes([Touch(True)])
    assert session.analyses.rule_context(session.model) is not ctx
    assert session.analyses.built == built + 1


def test_analysis_and_rewriting_share_one_rule_context():
    """The rewriters read the graph the analysis read: no second context between them; and the
    normalization passes build one only after a pass changed the graph."""
    built: list[int] = []

    class Spy(Stage):
        name = "spy"

        def run(self, session):
            built.append(session.analyses.built)

    stages = default_stages()
    stages.insert(2, Spy())  # after analyze
    stages.insert(8, Spy())  # after apply
    session = run_stages(_session(), stages)
    assert [s.name for s in stages][1:3] == ["analyze", "spy"] and stages[8].name == "spy"
    assert built[1] == built[0]  # apply reused the analysis's context
    rounds = next(r.stats["rounds"] for r in session.pass_results if r.name == "Repeat")
    # a context per round of normalization at most (the three passes that read one share it while
    # none of them changes the graph), and analysis takes the last one over: 2 in 2 rounds here,
    # where each of those passes and the analysis made its own before (3 x 2 + 1 + 1 for apply)
    assert session.analyses.built <= rounds


def test_the_architecture_page_lists_every_stage_with_what_it_reads_and_writes():
    rows = {
        line.split("|")[1].split("`")[1]: [cell.strip() for cell in line.split("|")[2:4]]
        for line in (ROOT / "docs" / "ARCHITECTURE.md").read_text().splitlines()
        if line.startswith("| `")
    }

    def declared(cell: str) -> tuple[str, ...]:  # names in backticks, not those in parentheses
        return tuple(re.findall(r"`(\w+)`", re.sub(r"\(.*?\)", "", cell)))

    every = default_stages(CalibrationData(open_data({}), holdout=open_data({})), compensation="lsq")
    assert {"Calibrate", "Fidelity", "KeepReference", "Compensate"} <= {type(s).__name__ for s in every}
    for stage in every:
        name = type(stage).__name__
        assert name in rows, f"docs/ARCHITECTURE.md has no row for stage {name}"
        reads, writes = rows[name]
        assert declared(reads) == stage.reads, name
        assert declared(writes) == stage.writes, name
