"""Bad input, class by class, through the command line: exit code 2, one line on stderr that says what
is wrong, found before any work (no Ray, no data loaded), and nothing left half-written."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from rblock_tune.cli import main
from rblock_tune.layout import (
    ARM_TAG,
    CHECKPOINT_FILE,
    COMPLETED,
    METRICS_FILE,
    PHASE_SEEDS,
    PHASE_TAG,
    ROLE_TAG,
    ROLE_TRIAL,
    SEED_TAG,
    STATE_FILE,
    STATUS_TAG,
)
from rblock_tune.tuning._workdir import RESERVED_NAMES

TINY_SPEC = """name: tiny
base:
  data: {name: synthetic, synthetic_size: 64, val_size: 16}
  model: {name: resnet8}
  train: {epochs: 1, batch_size: 16, device: cpu}
space:
  reg.drop_prob: {type: uniform, low: 0.05, high: 0.2}
search: {algorithm: random, num_samples: 2}
seeds: {top_k: 1, n_seeds: 1}
"""
GRID_SPEC = """name: grid
base:
  data: {name: synthetic, synthetic_size: 64, val_size: 16}
  model: {name: resnet8}
  train: {epochs: 1, batch_size: 16, device: cpu}
space:
  reg.block_size: [1, 3]
  reg.drop_prob: [0.1, 0.2]
search: {algorithm: grid}
"""
SMALL = [
    "--set", "data.name=synthetic", "--set", "data.synthetic_size=64", "--set", "data.val_size=16",
    "--set", "model.name=resnet8", "--set", "train.epochs=1", "--set", "train.batch_size=16",
    "--set", "train.device=cpu",
]  # fmt: skip


def refused(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run the CLI; it must end with exit code 2 and exactly one ``rblock-tune: error:`` line."""
    code = main(["-q", *args])
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2, (code, out, err)
    assert len(lines) == 1, err
    assert lines[0].startswith("rblock-tune: error: "), err
    assert "Traceback" not in err
    return lines[0]


def ray_started() -> bool:
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_SPEC)
    return path


# ------------------------------------------------------------------------------------ 1. input files
def _make_input(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"input-{kind}.yaml"
    if kind == "binary":
        path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe")
    elif kind == "nul":
        path.write_text("seed: 1\x00\n")
    elif kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "invalid":
        path.write_text("seed: [1, 2\n")
    elif kind == "list":
        path.write_text("- seed\n- 1\n")
    elif kind == "scalar":
        path.write_text("just words\n")
    elif kind == "unreadable":
        path.write_text("seed: 1\n")
        path.chmod(0)
    elif kind == "under-file":
        (tmp_path / "plain").write_text("x")
        path = tmp_path / "plain" / "spec.yaml"
    return path  # "missing": never created


FILE_KINDS = {
    "binary": "is not UTF-8 text",
    "nul": "is not text",
    "directory": "is a directory, not a file",
    "fifo": "is not a regular file",
    "missing": "does not exist",
    "under-file": "does not exist",
    "invalid": "is not valid YAML at line 2",
    "list": "must hold a mapping of keys (key: value lines), not a list",
    "scalar": "must hold a mapping of keys (key: value lines), not a str",
    "unreadable": "cannot be read (permission denied)",
}


@pytest.mark.parametrize("verb", ["train", "study"])
@pytest.mark.parametrize("kind", list(FILE_KINDS))
def test_unreadable_or_wrong_kind_input_file(
    verb: str, kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if kind == "unreadable" and os.geteuid() == 0:
        pytest.skip("root reads a file of mode 000")
    path = _make_input(tmp_path, kind)
    if verb == "train":
        line = refused(capsys, "train", "--config", str(path), *SMALL, "--out", str(tmp_path / "run"))
        what = "config file"
    else:
        line = refused(capsys, "study", "run", str(path), "--workdir", str(tmp_path / "work"))
        what = "study spec"
    assert f"{what} {str(path)!r} {FILE_KINDS[kind]}" in line
    assert not (tmp_path / "run").exists() and not (tmp_path / "work").exists()


def test_empty_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n")
    assert "is empty: a spec needs at least name and base" in refused(
        capsys, "study", "run", str(empty), "--workdir", str(tmp_path / "work")
    )
    assert not (tmp_path / "work").exists()
    # an empty trial config is the defaults: it trains (the test of that is in test_cli)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"garbage, not a checkpoint", "cannot be read"),
        (None, "no checkpoint at"),
        ("directory", "is a directory, not a checkpoint file"),
    ],
)
def test_resume_of_an_unreadable_checkpoint(
    content: bytes | str | None, fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    if isinstance(content, bytes):
        (run / CHECKPOINT_FILE).write_bytes(content)
    elif content == "directory":
        (run / CHECKPOINT_FILE).mkdir()
    assert fragment in refused(capsys, "train", "--out", str(run), "--resume")
    assert not (run / METRICS_FILE).exists()


# ---------------------------------------------------------------------------------- 2. duplicate keys
@pytest.mark.parametrize(
    ("text", "key", "lines"),
    [
        ("seed: 1\nseed: 2\n", "seed", (1, 2)),
        ("reg:\n  alpha: 1\n  drop_prob: 0.1\n  alpha: 2\n", "alpha", (2, 4)),
        ("reg: {alpha: 1, alpha: 2}\n", "alpha", (1, 1)),
    ],
)
def test_duplicate_key_in_a_trial_config(
    text: str, key: str, lines: tuple[int, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "trial.yaml"
    config.write_text(text)
    line = refused(capsys, "train", "--config", str(config), *SMALL, "--out", str(tmp_path / "run"))
    assert f"gives key {key!r} twice (line {lines[0]} and line {lines[1]})" in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("extra", "key", "lines"),
    [
        ("metric: val_acc\nmetric: val_loss\n", "metric", "(line 9 and line 10)"),
        ("seeds: {top_k: 1, top_k: 2}\n", "top_k", "(line 9 and line 9)"),
    ],
)
def test_duplicate_key_in_a_study_spec(
    extra: str, key: str, lines: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(TINY_SPEC.replace("seeds: {top_k: 1, n_seeds: 1}\n", "") + extra)
    line = refused(capsys, "study", "run", str(spec), "--workdir", str(tmp_path / "work"))
    assert f"gives key {key!r} twice {lines}" in line
    assert not (tmp_path / "work").exists()


def test_duplicate_key_in_a_set_value(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = refused(
        capsys, "train", *SMALL, "--set", "model.drop_stages={a: 1, a: 2}", "--out", str(tmp_path / "run")
    )
    assert "gives key 'a' twice" in line


# --------------------------------------------------------------------------- 3. unwritable destinations
def _destination(tmp_path: Path, kind: str) -> tuple[str, str]:
    """A destination of ``kind`` and what the error says about it."""
    (tmp_path / "plain").write_text("x")
    return {
        "proc": ("/proc/rblock-test/x", "is not writable"),
        "file": (str(tmp_path / "plain"), "is a file, not a directory"),
        "under-file": (str(tmp_path / "plain" / "run"), "lies under"),
    }[kind]


DESTINATIONS = ["proc", "file", "under-file"]


@pytest.mark.parametrize("kind", DESTINATIONS)
def test_train_out_not_writable(kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, fragment = _destination(tmp_path, kind)
    line = refused(capsys, "train", *SMALL, "--out", out)
    assert f"--out {out!r} {fragment}" in line
    assert (tmp_path / "plain").read_text() == "x"


@pytest.mark.parametrize("kind", DESTINATIONS)
def test_study_workdir_not_writable(
    kind: str, spec_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workdir, fragment = _destination(tmp_path, kind)
    line = refused(capsys, "study", "run", str(spec_file), "--workdir", workdir)
    assert "work directory" in line and fragment in line
    assert not ray_started()


def test_study_storage_not_writable(
    spec_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    storage, fragment = _destination(tmp_path, "under-file")
    line = refused(
        capsys, "study", "run", str(spec_file), "--workdir", str(tmp_path / "w"), "--storage", storage
    )
    assert "Ray storage" in line and fragment in line
    assert not (tmp_path / "w").exists()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A local MLflow store with an empty ``Default`` experiment and a two-arm fake study ``fake``
    (seed runs tagged as rblock-tune tags them, a float param and the compared metric)."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("fake")
    for arm, acc in (("a", 0.5), ("b", 0.6)):
        for seed in (1, 2):
            run = client.create_run(
                experiment,
                tags={
                    ROLE_TAG: ROLE_TRIAL,
                    PHASE_TAG: PHASE_SEEDS,
                    ARM_TAG: arm,
                    SEED_TAG: str(seed),
                    STATUS_TAG: COMPLETED,
                },
            )
            client.log_param(run.info.run_id, "reg.alpha", "1.5")
            client.log_metric(run.info.run_id, "test_acc", acc + seed / 100)
            client.set_terminated(run.info.run_id)
    return uri


@pytest.mark.parametrize("kind", DESTINATIONS)
def test_report_out_not_writable(
    kind: str, store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, fragment = _destination(tmp_path, kind)
    line = refused(capsys, "report", "--experiment", "fake", "--tracking-uri", store, "--out", out)
    assert f"--out {out!r} {fragment}" in line


# ------------------------------------------------------------------------------------- 4. study names
@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        *((name, "is reserved") for name in sorted(RESERVED_NAMES)),
        ("a/b", "is invalid"),
        ("..", "is invalid"),
        ("", "is invalid"),
        (".hidden", "is invalid"),
        ("with space", "is invalid"),
        (" lead", "is invalid"),
        ("tab\tname", "is invalid"),
    ],
)
def test_study_names_that_collide_with_the_workdir(
    name: str, fragment: str, spec_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workdir = tmp_path / "work"
    line = refused(capsys, "study", "run", str(spec_file), "--name", name, "--workdir", str(workdir))
    assert f"name={name!r} {fragment}" in line
    if fragment == "is reserved":
        assert "mlflow.db" in line and "optuna.db" in line and "ray" in line
    assert not workdir.exists()


def test_a_numeric_name_is_a_name(
    spec_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # --name 2024 is the name '2024', not the number: it gets as far as the work directory check
    (tmp_path / "plain").write_text("x")
    line = refused(
        capsys, "study", "run", str(spec_file), "--name", "2024", "--workdir", str(tmp_path / "plain")
    )
    assert "work directory" in line


# ------------------------------------------------------------------------------------ 5. corrupt state
_PLACES = '"format": 2, "workdir": "w", "storage": "s", "tracking_uri": "t", "optuna_storage": "o"}'
CORRUPT_STATES = {
    "truncated": ('{"format": 2, "name": "st', "not valid JSON at line 1"),
    "empty-file": ("", "(empty)"),
    "empty-object": ("{}", "missing 'spec'"),
    "list": ("[1, 2]", "a JSON list, not an object"),
    "string": ('"hello"', "a JSON str, not an object"),
    "missing-uri": (
        '{"format": 2, "spec": {}, "workdir": "w", "storage": "s", "optuna_storage": "o"}',
        "missing 'tracking_uri'",
    ),
    "wrong-type": ('{"spec": "abc", ' + _PLACES, "'spec' is \"abc\", not object"),
    "wrong-bool": ('{"spec": {}, "search_done": "yes", ' + _PLACES, "'search_done' is \"yes\", not boolean"),
    "binary": (b"\xff\xfe\x00", "not UTF-8 text"),
}


@pytest.mark.parametrize("verb", ["status", "resume", "report"])
@pytest.mark.parametrize("kind", list(CORRUPT_STATES))
def test_corrupt_study_state(
    verb: str, kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    content, fragment = CORRUPT_STATES[kind]
    folder = tmp_path / "work" / "st"
    folder.mkdir(parents=True)
    state = folder / STATE_FILE
    if isinstance(content, bytes):
        state.write_bytes(content)
    else:
        state.write_text(content)
    before = sorted(p.name for p in (tmp_path / "work").rglob("*"))
    if verb == "report":
        line = refused(capsys, "report", "--experiment", "st", "--workdir", str(tmp_path / "work"))
    else:
        line = refused(capsys, "study", verb, "st", "--workdir", str(tmp_path / "work"))
    assert f"{STATE_FILE} in {folder}" in line and "not a study state" in line and fragment in line
    assert f"remove {folder}" in line  # what to do
    assert sorted(p.name for p in (tmp_path / "work").rglob("*")) == before  # nothing written
    assert not ray_started()


def test_state_with_a_spec_this_version_refuses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "work" / "st"
    folder.mkdir(parents=True)
    spec = {"name": "st", "base": {"reg": {"alpah": 1}}}
    (folder / STATE_FILE).write_text('{"spec": ' + json.dumps(spec) + ", " + _PLACES)
    line = refused(capsys, "study", "status", "st", "--workdir", str(tmp_path / "work"))
    assert f"{STATE_FILE} in {folder} holds a spec" in line and "reg.alpah" in line


# -------------------------------------------------------------------------------------- 6. late errors
def test_missing_from_study_is_found_before_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        TINY_SPEC.replace(
            "seeds: {top_k: 1, n_seeds: 1}", "seeds: {top_k: 1, arms: [{label: o, from_study: nosuch}]}"
        )
    )
    workdir = tmp_path / "work"
    line = refused(capsys, "study", "run", str(spec), "--workdir", str(workdir))
    assert "from_study 'nosuch' has no state" in line and "run that study first" in line
    assert not workdir.exists()
    assert not ray_started()


def test_a_study_with_nothing_to_run_is_refused_before_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No space and no seeds section: refused, rather than "finished" with nothing trained."""
    spec = tmp_path / "spec.yaml"
    text = TINY_SPEC.split("space:")[0]  # the name and the base only
    spec.write_text(text)
    workdir = tmp_path / "work"
    line = refused(capsys, "study", "run", str(spec), "--workdir", str(workdir))
    assert "study 'tiny' has nothing to run" in line and "add a space" in line
    assert not workdir.exists()
    assert not ray_started()


@pytest.mark.parametrize("where", ["base", "arm"])
def test_missing_dataset_is_found_before_ray(
    where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RBLOCK_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "no-data"
    data = f"{{name: cifar10, root: {root}, download: false, val_size: 16}}"
    text = TINY_SPEC
    if where == "base":
        text = text.replace("{name: synthetic, synthetic_size: 64, val_size: 16}", data)
    else:  # only an arm of the seed phase needs the missing data
        arm = f"{{label: c, set: {{data.name: cifar10, data.root: {root}, data.download: false}}}}"
        text = text.replace(
            "seeds: {top_k: 1, n_seeds: 1}", f"seeds: {{top_k: 1, n_seeds: 1, arms: [{arm}]}}"
        )
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    workdir = tmp_path / "work"
    line = refused(capsys, "study", "run", str(spec), "--workdir", str(workdir))
    # the message a trial would give (rblock_tune.data), here before any trial
    assert f"cifar10 not found under {root}" in line and "data.download=true" in line
    assert not workdir.exists()
    assert not ray_started()


def test_train_missing_dataset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RBLOCK_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "no-data"
    line = refused(
        capsys, "train", "--set", "data.name=cifar100", "--set", f"data.root={root}", "--set",
        "data.download=false", "--out", str(tmp_path / "run"),
    )  # fmt: skip
    assert f"cifar100 not found under {root}" in line
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------ 7. silently wrong
NO_SPACE = TINY_SPEC.replace("space:\n  reg.drop_prob: {type: uniform, low: 0.05, high: 0.2}\n", "")
ARM_ON_CPU = "seeds: {top_k: 1, arms: [{label: c, set: {train.device: cpu}}]}"
SILENT = {
    "grid-num-samples": (
        GRID_SPEC.replace("{algorithm: grid}", "{algorithm: grid, num_samples: 8}"),
        "search.num_samples=8 does not apply to search.algorithm=grid, which runs each of its 4",
    ),
    "grid-partial-point": (
        GRID_SPEC.replace("{algorithm: grid}", "{algorithm: grid, points: [{reg.block_size: 3}]}"),
        "search.points[0] leaves out reg.drop_prob",
    ),
    "top-k-over-samples": (
        TINY_SPEC.replace("top_k: 1", "top_k: 3"),
        "seeds.top_k=3 asks for more configurations than the search runs (search.num_samples=2)",
    ),
    "top-k-over-grid": (
        GRID_SPEC + "seeds: {top_k: 5, n_seeds: 1}\n",
        "seeds.top_k=5 asks for more configurations than the search runs (its 4 grid combinations)",
    ),
    "top-k-without-search": (NO_SPACE.replace("top_k: 1", "top_k: 2"), "there is no search"),
    "gpus-on-cpu": (TINY_SPEC + "resources: {gpus: 1}\n", "resources.gpus=1 with base.train.device=cpu"),
    "gpus-on-cpu-arm": (
        TINY_SPEC.replace("device: cpu", "device: auto").replace("seeds: {top_k: 1, n_seeds: 1}", ARM_ON_CPU)
        + "resources: {gpus: 0.5}\n",
        "resources.gpus=0.5 with seeds.arms[0].set.train.device=cpu",
    ),
    "cuda-without-gpus": (
        TINY_SPEC.replace("device: cpu", "device: cuda"),
        "base.train.device=cuda with resources.gpus=0",
    ),
}


@pytest.mark.parametrize("case", list(SILENT))
def test_silently_wrong_specs_are_refused(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text, fragment = SILENT[case]
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    line = refused(capsys, "study", "run", str(spec), "--workdir", str(tmp_path / "work"))
    assert fragment in line
    assert not (tmp_path / "work").exists()


def test_grid_with_its_own_count_and_complete_points_is_accepted() -> None:
    import yaml

    from rblock_tune.tuning import spec_from_dict

    raw = yaml.safe_load(GRID_SPEC.replace("{algorithm: grid}", "{algorithm: grid, num_samples: 4}"))
    raw["search"]["points"] = [{"reg.block_size": 3, "reg.drop_prob": 0.2}]
    assert spec_from_dict(raw).search.num_samples == 4


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "run"
    assert main(["-q", "train", *SMALL, "--out", str(out)]) == 0
    return out


def test_resume_of_another_runs_directory_is_refused(
    finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    metrics = (finished_run / METRICS_FILE).read_text()
    other = tmp_path / "other.yaml"
    other.write_text("seed: 7\nreg: {variant: dropblock, drop_prob: 0.2}\n")
    line = refused(capsys, "train", "--config", str(other), *SMALL, "--out", str(finished_run), "--resume")
    for fragment in (
        "seed=7 differs",
        "reg.variant='dropblock' differs",
        "reg.drop_prob=0.2 differs",
        "another run",
    ):
        assert fragment in line
    assert (finished_run / METRICS_FILE).read_text() == metrics


def test_resume_where_metrics_json_records_another_run(
    finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / CHECKPOINT_FILE).write_bytes((finished_run / CHECKPOINT_FILE).read_bytes())
    record = json.loads((finished_run / METRICS_FILE).read_text())
    record["config"]["seed"] = 9
    (run / METRICS_FILE).write_text(json.dumps(record))
    line = refused(capsys, "train", "--out", str(run), "--resume")
    assert "records another run" in line and "seed" in line
    assert json.loads((run / METRICS_FILE).read_text())["config"]["seed"] == 9


# --------------------------------------------------------------------------------------- 8. misleading
@pytest.mark.parametrize("section", ["data", "model", "reg", "train"])
def test_a_section_set_to_a_value(section: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = refused(capsys, "train", "--set", f"{section}=5", "--out", str(tmp_path / "run"))
    assert f"{section} is a section of keys, not a value" in line
    assert "did you mean" not in line
    key = {"data": "data.root", "model": "model.name", "reg": "reg.alpha", "train": "train.epochs"}[section]
    assert key in line  # among the section's keys, listed


def test_report_metric_lists_only_metrics(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = refused(
        capsys, "report", "--experiment", "fake", "--tracking-uri", store, "--metric", "bogus",
        "--out", str(tmp_path / "r"),
    )  # fmt: skip
    assert "metric 'bogus' is not in the runs (metrics there: test_acc)" in line
    assert "reg.alpha" not in line
    assert not (tmp_path / "r").exists()


def test_report_of_an_experiment_that_is_no_study(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = refused(
        capsys, "report", "--experiment", "Default", "--tracking-uri", store, "--out", str(tmp_path / "r")
    )
    assert "experiment 'Default'" in line and "is not a study made by rblock-tune" in line
    assert not (tmp_path / "r").exists()
