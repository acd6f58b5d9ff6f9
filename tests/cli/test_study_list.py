"""``rblock-tune study list``: every study of a work directory, its state, trials done and best value,
without Ray; a broken study.json is one row, not a failed list."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest

from rblock_tune.cli import main
from rblock_tune.layout import STATE_FILE
from rblock_tune.tuning import list_studies, study_status


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["-q", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_missing_workdir_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "study", "list", "--workdir", str(tmp_path / "nowhere"))
    assert code == 2 and out == ""
    assert err.startswith("rblock-tune: error: ") and err.count("\n") == 1
    assert "does not exist" in err and str(tmp_path / "nowhere") in err
    a_file = tmp_path / "file"
    a_file.write_text("x")
    code, _, err = run(capsys, "study", "list", "--workdir", str(a_file))
    assert code == 2 and "is not a directory" in err and err.count("\n") == 1


def test_an_empty_workdir_is_one_line_exit_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "not-a-study").mkdir()  # a folder without study.json is not a study
    code, out, err = run(capsys, "study", "list", "--workdir", str(tmp_path))
    assert code == 0, err
    assert out.count("\n") == 1 and out.startswith(f"no studies in {tmp_path}")
    assert list_studies(tmp_path) == []


def _workdir_with(tiny_study: Any, tmp_path: Path) -> Path:
    """A workdir holding the tiny study's folder (its stores stay where study.json points), the same
    study as if its search had not finished, and two broken ones."""
    work = tmp_path / "work"
    shutil.copytree(tiny_study.workdir / tiny_study.name, work / tiny_study.name)
    state = json.loads((work / tiny_study.name / STATE_FILE).read_text())
    (work / "halfway").mkdir()
    halfway = {**state, "search_done": False, "seeds_done": False, "best": []}
    (work / "halfway" / STATE_FILE).write_text(json.dumps(halfway))
    (work / "truncated").mkdir()
    (work / "truncated" / STATE_FILE).write_text(json.dumps(state)[:40])
    (work / "empty").mkdir()
    (work / "empty" / STATE_FILE).write_text("{}")
    return work


@pytest.mark.slow
def test_list_shows_each_study_and_survives_a_broken_one(
    tiny_study: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = _workdir_with(tiny_study, tmp_path)
    code, out, err = run(capsys, "study", "list", "--workdir", str(work))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["STUDY", "STATE", "TRIALS", "SEED", "RUNS", "BEST"]
    assert len(lines) == 5  # header + four studies, sorted by folder name
    columns = [lines[0].index(h) for h in ("STATE", "TRIALS", "SEED RUNS", "BEST")]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == {"empty", "halfway", "tiny", "truncated"}
    state = json.loads((tiny_study.workdir / tiny_study.name / STATE_FILE).read_text())
    best = state["best"][0]["val_acc"]
    assert rows["tiny"][columns[0] :].startswith("finished ")  # aligned under its header
    assert rows["tiny"][columns[1] :].startswith("6/6 ")
    assert rows["tiny"][columns[2] :].startswith("9 ")
    assert rows["tiny"][columns[3] :] == f"val_acc {best:.4f}"
    assert rows["halfway"][columns[0] :].startswith("interrupted ")  # as study status says
    assert "unreadable: study.json is not a study state (not valid JSON" in rows["truncated"]
    assert "unreadable: study.json is not a study state (missing 'spec')" in rows["empty"]

    # the library's rows: the same counts as study status, the best as recorded (and as Optuna has it)
    by_name = {row["name"]: row for row in list_studies(work)}
    status = study_status(tiny_study.name, tiny_study.workdir)
    trial_counts = status["phases"]["search"]
    assert by_name["tiny"]["trials"] == sum(trial_counts.values())
    assert by_name["tiny"]["seed_runs"] == sum(status["phases"]["seeds"].values())
    assert by_name["tiny"]["best"] == best == status["best"]["val_acc"]
    study = optuna.load_study(
        study_name=tiny_study.name, storage=f"sqlite:///{tiny_study.workdir / 'optuna.db'}"
    )
    assert by_name["halfway"]["best"] == pytest.approx(study.best_value)  # best so far, from Optuna
    assert by_name["truncated"]["state"].startswith("unreadable: ")


@pytest.mark.slow
def test_list_starts_no_ray_and_creates_no_store(tiny_study: Any, tmp_path: Path) -> None:
    work = _workdir_with(tiny_study, tmp_path)
    (work / "lost").mkdir()  # a study whose stores are gone: listed, and no empty store made at the old path
    state = json.loads((work / tiny_study.name / STATE_FILE).read_text())
    gone = tmp_path / "gone"
    lost = {
        **state,
        "tracking_uri": f"sqlite:///{gone / 'mlflow.db'}",
        "optuna_storage": f"sqlite:///{gone / 'optuna.db'}",
    }
    (work / "lost" / STATE_FILE).write_text(json.dumps(lost))
    code = (
        "import sys; from rblock_tune.cli import main; "
        "rc = main(['study', 'list', '--workdir', sys.argv[1]]); "
        "assert 'ray' not in sys.modules, 'study list imported Ray'; sys.exit(rc)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(work)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "lost " in done.stdout and "tiny " in done.stdout
    assert not gone.exists()


def test_a_dead_server_or_a_broken_state_is_one_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No study has to be healthy for the list: a tracking server that does not answer is a note under
    the table (asked once, within seconds), a broken study.json an ``unreadable`` row."""
    spec = {"name": "remote", "base": {"data": {"name": "synthetic"}, "model": {"name": "resnet8"}}}
    dead = "http://127.0.0.1:9"  # the discard port: nothing listens
    for name in ("remote", "remote2"):
        (tmp_path / name).mkdir()
        state = {"format": 2, "name": name, "spec": {**spec, "name": name}, "tracking_uri": dead,
                 "workdir": str(tmp_path), "storage": str(tmp_path / "ray"),
                 "optuna_storage": f"sqlite:///{tmp_path / 'optuna.db'}",
                 "search_done": True, "seeds_done": False, "best": []}  # fmt: skip
        (tmp_path / name / STATE_FILE).write_text(json.dumps(state))
    (tmp_path / "badspec").mkdir()
    (tmp_path / "badspec" / STATE_FILE).write_text(json.dumps({**state, "spec": {"name": "x", "serach": {}}}))
    (tmp_path / "nokeys").mkdir()
    (tmp_path / "nokeys" / STATE_FILE).write_text(json.dumps({"spec": spec}))
    (tmp_path / "binary").mkdir()
    (tmp_path / "binary" / STATE_FILE).write_bytes(b"\xff\xfe\x00garbage")
    code, out, err = run(capsys, "study", "list", "--workdir", str(tmp_path))
    assert code == 0, err
    rows = {line.split()[0]: line for line in out.splitlines()[1:] if not line.startswith("note:")}
    assert "interrupted (search done)" in rows["remote"] and rows["remote"].split()[-3:] == ["-", "-", "-"]
    assert "unreadable: its spec is not valid" in rows["badspec"] and "serach" in rows["badspec"]
    assert "unreadable: study.json" in rows["binary"]
    assert "unreadable: study.json is not a study state (missing 'workdir')" in rows["nokeys"]
    notes = [line for line in out.splitlines() if line.startswith("note:")]
    assert len(notes) == 2 and all("127.0.0.1:9" in n and "unreachable" in n for n in notes)
