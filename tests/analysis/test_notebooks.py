"""The analysis notebooks (``analysis/*.ipynb``): committed without outputs, and they run headless.

The execution tests run each notebook with nbclient, in memory (the committed files are never
written), against the real tiny study of the ``tiny_study`` fixture, and check their key numbers
against the library and the study's report.
"""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path
from typing import Any

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient

from rblock_tune.analysis import compare_arms, load_runs

ANALYSIS = Path(__file__).resolve().parents[2] / "analysis"
NOTEBOOKS = ("seed_significance.ipynb", "study_overview.ipynb")
PARAMETER_VARIABLES = (
    "RBLOCK_METRIC",
    "RBLOCK_BASELINE",
    "RBLOCK_ARM",
    "RBLOCK_ALPHA",
    "RBLOCK_TOP_K",
)
"""Optional parameters read from the environment: unset for the tests, so the defaults apply."""


def _read(path: Path) -> Any:
    return nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]


def _code_cells(notebook: Any) -> list[Any]:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_saved_clean_and_parameterised(name: str) -> None:
    notebook = _read(ANALYSIS / name)
    nbformat.validate(notebook)
    for cell in _code_cells(notebook):
        assert cell.outputs == [], f"{name}: a code cell was saved with outputs:\n{cell.source[:200]}"
        assert cell.execution_count is None, f"{name}: a code cell was saved with an execution count"
    tagged = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{name}: needs exactly one cell tagged 'parameters'"
    assert 'os.environ.get("RBLOCK_TRACKING_URI"' in tagged[0].source
    assert 'os.environ.get("RBLOCK_EXPERIMENT"' in tagged[0].source
    sources = "\n".join(cell.source for cell in _code_cells(notebook))
    assert "from rblock_tune.analysis import" in sources  # the library, not a copy of it


def _execute(name: str, study: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, str, int]:
    """Run a copy of the notebook in a fresh kernel (which inherits this process's environment), in
    ``analysis/``; return the executed copy, its text outputs joined, and its number of PNG figures."""
    path = ANALYSIS / name
    saved = path.read_bytes()
    monkeypatch.setenv("RBLOCK_TRACKING_URI", study.tracking_uri)
    monkeypatch.setenv("RBLOCK_EXPERIMENT", study.name)
    for variable in PARAMETER_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    notebook = copy.deepcopy(_read(path))
    client = NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(ANALYSIS)}}
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, when a cell fails
    assert path.read_bytes() == saved, f"{name} was modified on disk by its execution"
    texts: list[str] = []
    images = 0
    for cell in _code_cells(notebook):
        for output in cell.outputs:
            assert output.output_type != "error", f"{name}: {output.ename}: {output.evalue}"
            if output.output_type == "stream":
                texts.append(output.text)
            else:
                data = output.get("data", {})
                texts.extend(str(data[kind]) for kind in ("text/plain", "text/markdown") if kind in data)
                images += "image/png" in data
    return notebook, "\n".join(texts), images


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-12, abs_tol=0.0)


@pytest.mark.slow
def test_seed_significance_notebook_runs_and_matches_the_library(
    tiny_study: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, text, images = _execute("seed_significance.ipynb", tiny_study, monkeypatch)
    found = re.search(
        r"compare_arms: arm=(\S+) baseline=(\S+) metric=(\S+) p_paired_t=(\S+) p_wilcoxon=(\S+)", text
    )
    assert found, text[-3000:]
    arm, baseline, metric = found.group(1, 2, 3)
    p_t, p_w = float(found.group(4)), float(found.group(5))
    assert (arm, baseline, metric) == ("top1", "dropblock", "test_acc")  # the defaults, on the tiny study

    runs = load_runs(tiny_study.name, tiny_study.tracking_uri)
    seed_runs = runs[(runs["phase"] == "seeds") & (runs["role"] == "trial") & (runs["status"] == "completed")]
    expected = compare_arms(seed_runs, baseline=baseline, metric=metric).set_index("arm").loc[arm]
    assert _same(p_t, float(expected["p_paired_t"])), (p_t, expected["p_paired_t"])
    assert _same(p_w, float(expected["p_wilcoxon"])), (p_w, expected["p_wilcoxon"])
    reported = pd.read_csv(tiny_study.report / "comparisons.csv").set_index("arm").loc[arm]
    assert _same(p_t, float(reported["p_paired_t"]))  # and the command line's report says the same

    assert f"paired t-test: p = {p_t:.6g}" in text
    assert "seeds needed" in text
    assert "is not significant" in text or "is significant" in text
    assert images >= 3  # bootstrap, distribution, pairing: figures show inline


@pytest.mark.slow
def test_study_overview_notebook_runs(tiny_study: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _, text, images = _execute("study_overview.ipynb", tiny_study, monkeypatch)
    assert "6 search trials, 9 seed-phase runs" in text, text[:2000]
    best = re.search(r"best trial: (\S+) \(val_acc = ", text)
    assert best, text[-3000:]
    runs = load_runs(tiny_study.name, tiny_study.tracking_uri)
    trials = runs[
        (runs["phase"] == "search")
        & (runs["role"] == "trial")
        & runs["status"].isin(["completed", "early_stopped"])
    ]
    leaders = trials.loc[trials["val_acc"] == trials["val_acc"].max(), "trial_id"].astype(str)
    assert best.group(1) in set(leaders)
    assert "top1" in text  # the top-k table names the trial the seed phase re-trained
    assert "importance" in text
    # search history, hyperparameters, importances, parallel coordinates, two sets of learning curves
    assert images >= 6
