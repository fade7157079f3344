"""The command line: every subcommand, its outputs, and the documented exit codes."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys

import onnx
import pytest

from onnxprune.cli import main
from onnxprune.errors import EXIT_CHECK_FAILED, EXIT_MODEL, EXIT_OK, EXIT_USAGE
from tests.conftest import MODELS

DEFAULT = MODELS / "default.onnx"


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "in.onnx"
    shutil.copy(DEFAULT, path)
    return path


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_prune_writes_model_plan_report_and_summary(model, tmp_path, capsys):
    out, plan, report = tmp_path / "out.onnx", tmp_path / "plan.json", tmp_path / "report.json"
    before = digest(model)
    code = main([str(model), str(out), "--ratio", "0.4", "--plan", str(plan), "--report", str(report)])
    text = capsys.readouterr().out
    assert code == EXIT_OK
    assert "params" in text and "MACs" in text and f"wrote {out}" in text
    onnx.checker.check_model(onnx.load(out), full_check=True)
    plan_data = json.loads(plan.read_text())
    assert plan_data["format"] == "onnxprune-plan" and plan_data["slices"]
    report_data = json.loads(report.read_text())
    assert report_data["params_after"] < report_data["params_before"]
    assert digest(model) == before


def test_apply_plan_replays_the_same_pruning(model, tmp_path):
    first, second, plan = tmp_path / "a.onnx", tmp_path / "b.onnx", tmp_path / "plan.json"
    assert (
        main([str(model), str(first), "--ratio", "0.5", "--criterion", "l2", "--plan", str(plan)]) == EXIT_OK
    )
    assert main([str(model), str(second), "--apply-plan", str(plan)]) == EXIT_OK
    assert first.read_bytes() == second.read_bytes()


def test_validate_flag_reports_parity(model, tmp_path, capsys):
    assert main([str(model), str(tmp_path / "o.onnx"), "--ratio", "0.3", "--validate"]) == EXIT_OK
    assert "parity ok" in capsys.readouterr().out


def test_round_to_keeps_multiples(model, tmp_path):
    plan = tmp_path / "plan.json"
    assert (
        main([str(model), str(tmp_path / "o.onnx"), "--ratio", "0.4", "--round-to", "8", "--plan", str(plan)])
        == EXIT_OK
    )
    for group in json.loads(plan.read_text())["groups"]:
        assert len(group["keep"]) % 8 == 0 or len(group["keep"]) == group["size"]


def test_exclude_keeps_matching_nodes(model, tmp_path):
    plan_all, plan_ex = tmp_path / "all.json", tmp_path / "ex.json"
    assert main([str(model), str(tmp_path / "a.onnx"), "--ratio", "0.5", "--plan", str(plan_all)]) == EXIT_OK
    assert (
        main(
            [str(model), str(tmp_path / "b.onnx"), "--ratio", "0.5", "--exclude", ".", "--plan", str(plan_ex)]
        )
        == EXIT_OK
    )
    assert json.loads(plan_all.read_text())["slices"]
    assert json.loads(plan_ex.read_text())["slices"] == []


def test_analyze_lists_groups_and_barriers(model, tmp_path, capsys):
    out = tmp_path / "analysis.json"
    assert main(["analyze", str(model), "--json", str(out)]) == EXIT_OK
    text = capsys.readouterr().out
    assert "prunable" in text and "graph output" in text
    data = json.loads(out.read_text())
    assert any(g["prunable"] for g in data["groups"]) and data["barriers"]


def test_validate_subcommand_accepts_a_good_result_and_rejects_a_wrong_plan(model, tmp_path, capsys):
    out, plan, other = tmp_path / "o.onnx", tmp_path / "plan.json", tmp_path / "other.json"
    assert main([str(model), str(out), "--ratio", "0.4", "--plan", str(plan)]) == EXIT_OK
    assert main(["validate", str(model), str(out), "--plan", str(plan)]) == EXIT_OK
    assert main([str(model), str(tmp_path / "x.onnx"), "--ratio", "0.6", "--plan", str(other)]) == EXIT_OK
    capsys.readouterr()
    assert main(["validate", str(model), str(out), "--plan", str(other)]) == EXIT_CHECK_FAILED
    assert "FAILED" in capsys.readouterr().out.upper()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["{missing}", "{out}", "--ratio", "0.4"], EXIT_USAGE, "no such file"),
        (["{model}", "{out}"], EXIT_USAGE, "--ratio"),
        (["{model}", "{out}", "--ratio", "1.5"], EXIT_USAGE, "outside [0, 1)"),
        (["{model}", "{out}", "--ratio", "-0.1"], EXIT_USAGE, "outside [0, 1)"),
        (["{model}", "{out}", "--ratio", "abc"], EXIT_USAGE, "invalid float"),
        (["{model}", "{model}", "--ratio", "0.4"], EXIT_USAGE, "--force"),
        (["{model}", "{out}", "--ratio", "0.4", "--exclude", "("], EXIT_USAGE, "regular expression"),
        (["{model}", "{out}", "--ratio", "0.4", "--round-to", "0"], EXIT_USAGE, "round_to"),
        (["{garbage}", "{out}", "--ratio", "0.4"], EXIT_MODEL, "not an ONNX model"),
        (["{empty}", "{out}", "--ratio", "0.4"], EXIT_MODEL, "empty file"),
        (["{model}", "{out}", "--apply-plan", "{garbage}"], EXIT_MODEL, "plan"),
        (["{model}", "{nodir}", "--ratio", "0.4"], EXIT_USAGE, "does not exist"),
        (["analyze", "{missing}"], EXIT_USAGE, "no such file"),
        (["validate", "{model}", "{model}"], EXIT_USAGE, "--plan"),
    ],
    ids=[
        "missing-input",
        "no-ratio",
        "ratio-high",
        "ratio-negative",
        "ratio-not-number",
        "output-is-input",
        "bad-regex",
        "round-to-zero",
        "garbage-model",
        "empty-model",
        "bad-plan",
        "no-output-dir",
        "analyze-missing",
        "validate-no-plan",
    ],
)
def test_failures_have_distinct_exit_codes_and_leave_nothing(model, tmp_path, capsys, args, code, message):
    garbage, empty = tmp_path / "garbage.onnx", tmp_path / "empty.onnx"
    garbage.write_bytes(b"\x08\x07not a model at all \xff\xfe")
    empty.write_bytes(b"")
    names = {
        "model": model,
        "out": tmp_path / "out.onnx",
        "missing": tmp_path / "missing.onnx",
        "garbage": garbage,
        "empty": empty,
        "nodir": tmp_path / "nodir" / "out.onnx",
    }
    before = digest(model)
    argv = [a.format(**names) for a in args]
    assert main(argv) == code
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert not (tmp_path / "out.onnx").exists()
    assert digest(model) == before


def test_force_allows_overwriting_the_input(model):
    assert main([str(model), str(model), "--ratio", "0.3", "--force"]) == EXIT_OK
    onnx.checker.check_model(onnx.load(model), full_check=True)


def test_console_script_and_module_entry_points(model, tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "onnxprune", str(model), str(tmp_path / "o.onnx"), "--ratio", "0.2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == EXIT_OK, run.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "onnxprune", "analyze", str(tmp_path / "nope.onnx")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == EXIT_USAGE and "no such file" in bad.stderr and "Traceback" not in bad.stderr


def test_validate_flag_times_and_reports(model, tmp_path, capsys):
    report = tmp_path / "report.json"
    code = main(
        [
            str(model),
            str(tmp_path / "o.onnx"),
            "--ratio",
            "0.4",
            "--validate",
            "--bench-runs",
            "3",
            "--report",
            str(report),
        ]
    )
    assert code == EXIT_OK
    text = capsys.readouterr().out
    assert "speedup" in text and "realised fraction" in text and "latency median" in text
    data = json.loads(report.read_text())
    assert data["validation"]["checker_ok"] and data["benchmark"]["speedup"] > 0
    assert data["benchmark"]["session"]["intra_op_threads"] == 2


def test_bench_two_models_and_refuses_other_inputs(model, tmp_path, capsys):
    pruned = tmp_path / "p.onnx"
    assert main([str(model), str(pruned), "--ratio", "0.5"]) == EXIT_OK
    capsys.readouterr()
    assert (
        main(
            [
                "bench",
                str(model),
                str(pruned),
                "--runs",
                "3",
                "--warmup",
                "1",
                "--json",
                str(tmp_path / "b.json"),
            ]
        )
        == EXIT_OK
    )
    assert "speedup" in capsys.readouterr().out
    assert json.loads((tmp_path / "b.json").read_text())["ideal_speedup"] > 1
    other = MODELS / "transformers" / "bert_dynamo.onnx"
    assert main(["bench", str(model), str(other), "--runs", "1"]) == EXIT_USAGE
    assert "input" in capsys.readouterr().err


def test_budget_flags_report_asked_against_achieved(model, tmp_path, capsys):
    report = tmp_path / "report.json"
    assert (
        main(["prune", str(model), str(tmp_path / "o.onnx"), "--target-macs", "0.5", "--report", str(report)])
        == 0
    )
    out = capsys.readouterr().out
    assert "budget: macs x0.500 asked" in out and "global allocation" in out
    budget = json.loads(report.read_text())["budget"]
    assert budget["asked"] == 0.5 and abs(budget["achieved"] - 0.5) <= 0.01
    code = main(
        ["prune", str(model), str(tmp_path / "u.onnx"), "--target-params", "0.6", "--allocate", "uniform"]
    )
    assert code == EXIT_OK and "uniform allocation" in capsys.readouterr().out


def test_a_budget_with_a_ratio_is_a_usage_error(model, tmp_path, capsys):
    code = main(["prune", str(model), str(tmp_path / "o.onnx"), "--target-macs", "0.5", "--ratio", "0.3"])
    assert code == EXIT_USAGE and "either a budget" in capsys.readouterr().err
    assert not (tmp_path / "o.onnx").exists()
