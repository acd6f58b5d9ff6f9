"""``rblock-tune train`` through its entry point: outputs, exit codes, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rblock_tune import __version__
from rblock_tune.cli import main
from rblock_tune.layout import METRICS_FILE

QUICKSTART = str(Path(__file__).resolve().parents[2] / "search_spaces" / "quickstart.yaml")
SMALL = [
    "--set",
    "data.name=synthetic",
    "--set",
    "data.synthetic_size=128",
    "--set",
    "data.val_size=32",
    "--set",
    "model.name=resnet8",
    "--set",
    "train.epochs=1",
    "--set",
    "train.batch_size=32",
    "--set",
    "train.device=cpu",
]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["-q", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_train_writes_results_and_prints_where(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "run"
    code, out, err = run(capsys, "train", *SMALL, "--out", str(out_dir))
    assert code == 0, err
    assert f"results: {out_dir / 'metrics.json'}" in out
    assert "test_acc" in out
    metrics = json.loads((out_dir / METRICS_FILE).read_text())
    assert metrics["status"] == "completed"
    # a second run into the same directory is refused, not overwritten
    code, _, err = run(capsys, "train", *SMALL, "--out", str(out_dir))
    assert code == 2
    assert err.strip().count("\n") == 0 and "--resume" in err
    # resuming a finished run is a no-op that reports the same result
    code, out, err = run(capsys, "train", "--out", str(out_dir), "--resume")
    assert code == 0, err
    assert json.loads((out_dir / METRICS_FILE).read_text())["test_acc"] == metrics["test_acc"]


def test_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "trial.yaml"
    cfg.write_text("seed: 5\nreg: {variant: dropblock, drop_prob: 0.15}\n")
    code, _, err = run(capsys, "train", "--config", str(cfg), *SMALL, "--out", str(tmp_path / "r"))
    assert code == 0, err
    metrics = json.loads((tmp_path / "r" / METRICS_FILE).read_text())
    assert metrics["seed"] == 5 and metrics["config"]["reg"]["variant"] == "dropblock"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--set", "reg.alpah=2"], "unknown key 'reg.alpah' (did you mean 'reg.alpha'?)"),
        (["--set", "reg.drop_prob=1.2"], "reg.drop_prob=1.2 is out of range: must be in [0, 1)"),
        (["--set", "reg.block_size=0"], "reg.block_size=0 is out of range: must be >= 1"),
        (["--set", "reg.alpha=-0.5"], "reg.alpha=-0.5 is out of range: must be >= 0"),
        (["--set", "reg.variant=rdrop"], "reg.variant='rdrop' is not allowed"),
        (["--set", "model.name=resnet9"], "model.name='resnet9' is not allowed"),
        (["--set", "train.epochs=x"], "train.epochs='x' has the wrong type"),
        (["--config", "/no/such.yaml"], "config file '/no/such.yaml' does not exist"),
        (["--resume"], "--resume needs --out DIR"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_input_is_one_line_exit_2(
    args: list[str], fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = (
        run(capsys, "train", *args, "--out", str(tmp_path / "x"))
        if args != ["--resume"]
        else run(capsys, "train", *args)
    )
    assert code == 2
    assert fragment in err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    assert not (tmp_path / "x").exists()  # rejected before any work


def test_missing_dataset_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RBLOCK_CACHE_DIR", str(tmp_path / "cache"))
    code, _, err = run(
        capsys,
        "train",
        "--set",
        f"data.root={tmp_path / 'empty'}",
        "--set",
        "data.download=false",
        "--set",
        "train.epochs=1",
        "--out",
        str(tmp_path / "r"),
    )
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert str(tmp_path / "empty") in err and "RBLOCK_DATA_DIR" in err
    assert not (tmp_path / "r").exists()  # no empty run directory left behind


def test_resume_with_changed_key_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "run"
    assert run(capsys, "train", *SMALL, "--out", str(out_dir))[0] == 0
    code, _, err = run(capsys, "train", "--out", str(out_dir), "--resume", "--set", "reg.alpha=3")
    assert code == 2 and "reg.alpha=3.0 differs" in err


def test_diverged_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(
        capsys,
        "train",
        *SMALL,
        "--set",
        "train.lr=1e30",
        "--set",
        "reg.variant=none",
        "--out",
        str(tmp_path / "r"),
    )
    assert code == 3
    assert err.startswith("rblock-tune: error: diverged:")
    assert json.loads((tmp_path / "r" / METRICS_FILE).read_text())["status"] == "diverged"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert f"rblock-tune {__version__}" in capsys.readouterr().out


# ------------------------------------------------------------------------- study verbs
def test_study_spec_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text("name: s\nbase: {model: {name: resnet8}}\nspace: {reg.alpah: [1, 2]}\n")
    code, _, err = run(capsys, "study", "run", str(spec), "--workdir", str(tmp_path / "w"))
    assert code == 2
    assert "space.reg.alpah" in err and "did you mean 'space.reg.alpha'" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "w").exists()  # refused before any work
    code, _, err = run(
        capsys, "study", "run", QUICKSTART, "--set", "search.num_samples=0",
        "--workdir", str(tmp_path / "w"),
    )  # fmt: skip
    assert code == 2 and "search.num_samples=0 is out of range" in err


def test_study_remote_cluster_with_local_tracking_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(
        capsys, "study", "run", QUICKSTART, "--address", "10.1.2.3:6379",
        "--storage", str(tmp_path / "shared"), "--workdir", str(tmp_path / "w"),
    )  # fmt: skip
    assert code == 2 and "--tracking-uri http://HOST:PORT" in err
    assert len(err.strip().splitlines()) == 1


def test_study_resume_and_status_of_unknown_study(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for action in ("resume", "status"):
        code, _, err = run(capsys, "study", action, "nope", "--workdir", str(tmp_path))
        assert code == 2 and "no study 'nope'" in err
        assert len(err.strip().splitlines()) == 1


def test_study_without_action_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "study")
    assert code == 2 and "study needs an action" in err


def test_study_optuna_storage_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bad or unreachable Optuna storage stops the study before Ray starts, with the password hidden;
    RBLOCK_OPTUNA_STORAGE is the flag's default."""
    work = str(tmp_path / "w")
    code, _, err = run(capsys, "study", "run", QUICKSTART, "--workdir", work, "--optuna-storage", "optuna.db")
    assert code == 2 and "is not a database URL" in err and len(err.strip().splitlines()) == 1
    port = _closed_port()
    url = f"postgresql://rblock:s3cret@127.0.0.1:{port}/optuna"
    code, _, err = run(capsys, "study", "run", QUICKSTART, "--workdir", work, "--optuna-storage", url)
    assert code == 2 and "cannot be opened" in err and "Connection refused" in err
    assert "s3cret" not in err and "rblock:***@" in err and len(err.strip().splitlines()) == 1
    monkeypatch.setenv("RBLOCK_OPTUNA_STORAGE", url)
    code, _, err = run(capsys, "study", "run", QUICKSTART, "--workdir", work)
    assert code == 2 and f"127.0.0.1:{port}/optuna cannot be opened" in err


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when this returns: nothing listens there
