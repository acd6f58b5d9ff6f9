"""Issue 10, section 3, below the command line: what the driver writes for Ray to pickle holds no
password; the searcher's own state is JSON (an earlier version's pickle still restores); study.json
is written mode 600 with its URLs redacted."""

from __future__ import annotations

import json
import pickle
import stat
from pathlib import Path
from typing import Any

from optuna.trial import TrialState

from rblock_tune.layout import STATE_FORMAT
from rblock_tune.tuning import OptunaStudySearcher, spec_from_dict
from rblock_tune.tuning._searcher import SEARCHER_STATE_FORMAT
from rblock_tune.tuning._workdir import read_state, write_state

SPEC = {
    "name": "t",
    "base": {
        "data": {"name": "synthetic", "synthetic_size": 128, "val_size": 32},
        "model": {"name": "resnet8"},
        "train": {"epochs": 2, "device": "cpu"},
    },
    "space": {"train.lr": {"type": "loguniform", "low": 0.01, "high": 0.1}},
    "search": {"num_samples": 3, "max_concurrent": 1},
}


def _searcher(tmp_path: Path, storage: str | None = None) -> OptunaStudySearcher:
    url = storage or f"sqlite:///{tmp_path / 'optuna.db'}"
    return OptunaStudySearcher(spec_from_dict(SPEC), url, "t", 2)


def test_searcher_state_is_json_and_restores(tmp_path: Path) -> None:
    searcher = _searcher(tmp_path)
    first = searcher.suggest("a")
    searcher.on_trial_result("a", {"epoch": 1, "val_acc": 0.4})
    path = tmp_path / "searcher-state.pkl"  # Ray's name for it
    searcher.save(str(path))
    record = json.loads(path.read_text())
    assert record == {"format": SEARCHER_STATE_FORMAT, "trials": {"a": 0}, "done": [], "reported": {"a": [1]}}
    restored = _searcher(tmp_path)
    restored.restore(str(path))
    assert restored.suggest("a") == first
    restored.on_trial_complete("a", {"epoch": 2, "val_acc": 0.7})
    assert restored.study.trials[0].state == TrialState.COMPLETE


def test_searcher_state_pickled_by_an_earlier_version_still_restores(tmp_path: Path) -> None:
    """An interrupted study of the version that pickled the searcher's __dict__ resumes."""
    searcher = _searcher(tmp_path)
    first = searcher.suggest("a")
    newer = ("_live", "_reported", "_opened")  # fields the earlier version did not have
    old: dict[str, Any] = {k: v for k, v in searcher.__dict__.items() if k not in newer}
    old["_study"] = None
    path = tmp_path / "searcher-state.pkl"
    path.write_bytes(pickle.dumps(old))
    restored = _searcher(tmp_path)
    restored.restore(str(path))
    assert restored.suggest("a") == first


def test_what_ray_pickles_holds_no_password(tmp_path: Path) -> None:
    """The searcher (pickled into tuner.pkl) carries its storage URL redacted, and gets the password
    back in the driver that was given it."""
    url = f"sqlite:///{tmp_path / 'optuna.db'}?password=s3cret"
    searcher = _searcher(tmp_path, url)
    blob = pickle.dumps(searcher)
    assert b"s3cret" not in blob and b"password=***" in blob
    assert pickle.loads(blob)._storage == url


def test_state_file_is_600_and_redacted(tmp_path: Path) -> None:
    path = tmp_path / "s" / "study.json"
    state: Any = {
        "format": STATE_FORMAT,
        "spec": {"name": "s"},
        "workdir": str(tmp_path),
        "storage": str(tmp_path / "ray"),
        "tracking_uri": "http://me:pw1@host:5000",
        "optuna_storage": "postgresql://me:pw2@db:5432/optuna",
    }
    write_state(path, state)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert "pw1" not in text and "pw2" not in text
    assert read_state(path)["optuna_storage"] == "postgresql://me:***@db:5432/optuna"
    path.chmod(0o644)  # a rewrite (resume) makes it private again
    write_state(path, state)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not path.with_name("study.json.tmp").exists()
