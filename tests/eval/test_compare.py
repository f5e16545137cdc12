"""`forumtune eval --compare A B`: both runs' numbers, curves and config differences in one report."""

import json

import pytest
from selectolax.lexbor import LexborHTMLParser as HTMLParser
from typer.testing import CliRunner

from forumtune.cli import app
from forumtune.errors import EvalError
from forumtune.eval.compare import compare_runs


def metric_row(page, label):
    row = next(r for r in HTMLParser(page).css("table#metrics tr") if r.css_first("th").text() == label)
    return row.css("td")


def test_compare_puts_each_runs_own_numbers_side_by_side(evaluated_run, second_run, tmp_path):
    report = compare_runs(evaluated_run.run_dir, second_run.run_dir, out_dir=tmp_path / "cmp")
    page = report.read_text()
    results = [
        json.loads((run.run_dir / "eval" / "metrics.json").read_text()) for run in (evaluated_run, second_run)
    ]
    cells = metric_row(page, "eval loss, fine-tuned")
    assert [float(c.attributes["data-value"]) for c in cells] == [r["tuned_eval_loss"] for r in results]
    better = 0 if results[0]["tuned_eval_loss"] < results[1]["tuned_eval_loss"] else 1
    assert (
        "better" in cells[better].attributes["class"]
        and "better" not in cells[1 - better].attributes["class"]
    )
    assert (tmp_path / "cmp" / "loss.png").read_bytes()[:4] == b"\x89PNG"
    differences = {
        row.css_first("th").text(): [td.text() for td in row.css("td")]
        for row in HTMLParser(page).css("table#config-diff tr")[1:]
    }
    assert "name" not in differences  # the names head the columns instead
    assert differences["eval.num_samples"] == ["5", "2"]


def test_compare_from_the_command_line_takes_configs_or_run_dirs(evaluated_run, second_run, tmp_path):
    config_a = evaluated_run.run_dir.parent.parent / "config.yaml"
    result = CliRunner().invoke(
        app, ["eval", "--compare", str(config_a), str(second_run.run_dir), "--out", str(tmp_path / "cli")]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cli" / "report.html").exists()


def test_compare_names_the_run_that_was_not_evaluated(evaluated_run, tmp_path):
    with pytest.raises(EvalError, match=r"run `forumtune eval CONFIG` for it first"):
        compare_runs(evaluated_run.run_dir, tmp_path)
