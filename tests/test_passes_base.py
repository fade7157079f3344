"""The pass infrastructure (passes/base.py): the Repeat fixed point, and the PassManager's errors:
a model problem goes through as it is, any other exception is an internal error naming the pass."""

from __future__ import annotations

import onnx
import pytest

from onnxprune.cli import main
from onnxprune.errors import EXIT_INTERNAL, EXIT_MODEL, InternalError, ModelError
from onnxprune.passes import Pass, PassManager, PassResult, Repeat, UniqueNodeNames
from tests.conftest import MODELS
from tests.pass_models import parse

# -- Repeat ---------------------------------------------------------------------------------


class Fake(Pass):
    """Changes the model (a visible edit: its doc_string grows) on its first `changes` calls."""

    def __init__(self, label: str, changes: int = 0) -> None:
        self.label = label
        self.changes = changes
        self.calls = 0

    @property
    def name(self) -> str:
        return self.label

    def call(self, model: onnx.ModelProto) -> PassResult:
        self.calls += 1
        modified = self.calls <= self.changes
        if modified:
            model.doc_string += self.label
        return PassResult(self.name, modified, {f"{self.label}_calls": 1})


class Always(Fake):
    def __init__(self, label: str) -> None:
        super().__init__(label, changes=10**9)


def tiny() -> onnx.ModelProto:
    return parse("g (float[2] x) => (float[2] y) { y = Relu(x) }")


def test_repeat_runs_each_pass_once_when_nothing_changes():
    passes = [Fake("a"), Fake("b"), Fake("c")]
    model = tiny()
    result = Repeat(passes)(model)
    assert [p.calls for p in passes] == [1, 1, 1]
    assert not result.modified
    assert result.stats == {"a_calls": 1, "b_calls": 1, "c_calls": 1, "rounds": 1}
    assert model.doc_string == ""


def test_repeat_first_pass_changing_twice():
    # a+ b c a+ b c a: after a's third (unchanged) run, b and c have seen the model as it is
    passes = [Fake("a", changes=2), Fake("b"), Fake("c")]
    model = tiny()
    result = Repeat(passes)(model)
    assert [p.calls for p in passes] == [3, 2, 2]
    assert result.modified
    assert result.stats["rounds"] == 3  # 7 steps of 3 passes
    assert result.stats["a_calls"] == 3 and result.stats["b_calls"] == 2
    assert model.doc_string == "aa"


def test_repeat_middle_pass_changing_twice():
    # a b+ c a b+ c a b: a and c need a run after each of b's changes, b one more to see none
    passes = [Fake("a"), Fake("b", changes=2), Fake("c")]
    result = Repeat(passes)(tiny())
    assert [p.calls for p in passes] == [3, 3, 2]
    assert result.modified
    assert result.stats["rounds"] == 3  # 8 steps


def test_repeat_last_pass_changing_once():
    # a b c+ a b c: the second cycle runs whole, none after it
    passes = [Fake("a"), Fake("b"), Fake("c", changes=1)]
    result = Repeat(passes)(tiny())
    assert [p.calls for p in passes] == [2, 2, 2]
    assert result.stats["rounds"] == 2


def test_repeat_single_pass_reaches_its_fixed_point():
    only = Fake("a", changes=3)
    result = Repeat([only])(tiny())
    assert only.calls == 4
    assert result.stats["rounds"] == 4


@pytest.mark.parametrize("max_rounds", [1, 5])
def test_repeat_max_rounds_bounds_an_always_changing_pass(max_rounds):
    always, quiet = Always("a"), Fake("b")
    model = tiny()
    result = Repeat([always, quiet], max_rounds=max_rounds)(model)
    assert always.calls == max_rounds
    assert quiet.calls == max_rounds
    assert result.modified
    assert result.stats["rounds"] == max_rounds
    assert model.doc_string == "a" * max_rounds


def test_repeat_of_no_passes_does_nothing():
    result = Repeat([])(tiny())
    assert not result.modified
    assert result.stats == {"rounds": 0}


# -- PassManager: model problems go through, anything else is an internal error -------------


class Broken(Pass):
    """A pass with a bug: it raises a plain KeyError."""

    def call(self, model: onnx.ModelProto) -> PassResult:
        raise KeyError("missing")


class Refuses(Pass):
    """A pass that recognises a model it cannot handle."""

    def call(self, model: onnx.ModelProto) -> PassResult:
        raise ModelError("unsupported attribute", node="n0", op_type="Relu")


def test_a_bug_in_a_pass_is_an_internal_error_naming_the_pass_and_those_before_it():
    with pytest.raises(InternalError) as info:
        PassManager([Fake("first"), Fake("second"), Broken(), Fake("never")]).run(tiny())
    error = info.value
    assert error.exit_code == EXIT_INTERNAL
    assert error.pass_name == "Broken" and error.passes_run == ("first", "second")
    assert "pass Broken" in str(error) and "KeyError" in str(error) and "first, second" in str(error)
    assert isinstance(error.__cause__, KeyError)


def test_a_model_problem_a_pass_recognises_goes_through_as_it_is():
    with pytest.raises(ModelError, match=r"node 'n0' \(Relu\): unsupported attribute") as info:
        PassManager([Fake("first"), Refuses()]).run(tiny())
    assert info.value.exit_code == EXIT_MODEL


def test_a_bug_in_a_pass_inside_repeat_names_that_pass():
    with pytest.raises(InternalError) as info:
        PassManager([Fake("first"), Repeat([Fake("inner"), Broken()])]).run(tiny())
    error = info.value
    assert error.pass_name == "Broken (in Repeat)" and error.passes_run == ("first",)
    assert isinstance(error.__cause__, KeyError)


def test_an_internal_error_a_pass_raises_itself_is_named_after_the_pass():
    class Raises(Pass):
        def call(self, model: onnx.ModelProto) -> PassResult:
            raise InternalError("inconsistent state")

    with pytest.raises(InternalError, match="pass Raises") as info:
        PassManager([Raises()]).run(tiny())
    assert info.value.passes_run == ()


def test_the_cli_exits_4_naming_the_pass_when_a_pass_has_a_bug(tmp_path, monkeypatch, capsys):
    def broken(self, model: onnx.ModelProto) -> PassResult:
        raise KeyError("missing")

    monkeypatch.setattr(UniqueNodeNames, "call", broken)
    out = tmp_path / "out.onnx"
    code = main([str(MODELS / "default.onnx"), str(out), "--ratio", "0.4"])
    assert code == EXIT_INTERNAL
    message = capsys.readouterr().err
    assert "UniqueNodeNames" in message and "KeyError" in message
    assert not out.exists()
