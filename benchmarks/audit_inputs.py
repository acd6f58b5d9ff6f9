"""Input audit: about a hundred bad inputs through the ``rblock-tune`` command line, and how each ended.

Each case runs the CLI in its own process, as a user would, with a time limit. A case is *good*
when it ends as the project promises: exit code 2, exactly one line on stderr starting
``rblock-tune: error:``, no traceback, within the time limit, and (where the case says so) nothing
written. A few cases are not errors at all (``study list`` of an empty work directory): they expect
exit 0. The audit first makes one small finished study (synthetic data, about a minute) for the
cases that need one (report, status and resume against real stores).

    python benchmarks/audit_inputs.py              # every case; prints a table and a summary
    python benchmarks/audit_inputs.py -k report    # only the cases whose name holds "report"
    python benchmarks/audit_inputs.py --jobs 1     # one case at a time (default: 2)

Exit code: 0 when every case was good, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CLI = [sys.executable, "-m", "rblock_tune.cli"]

TINY_BASE: dict[str, Any] = {
    "data": {"name": "synthetic", "synthetic_size": 128, "val_size": 32},
    "model": {"name": "resnet8"},
    "reg": {"variant": "bdrop_dml", "alpha": 1.0, "drop_prob": 0.1, "block_size": 3},
    "train": {"epochs": 1, "batch_size": 64, "device": "cpu", "eval_batch_size": 64},
}


def tiny_spec(**changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "audit",
        "base": json.loads(json.dumps(TINY_BASE)),
        "space": {"reg.alpha": {"type": "loguniform", "low": 0.1, "high": 10}},
        "search": {"algorithm": "tpe", "num_samples": 2, "max_concurrent": 2, "seed": 0},
        "resources": {"cpus": 1},
        "seeds": {
            "top_k": 1,
            "n_seeds": 2,
            "arms": [{"label": "dropblock", "set": {"reg.variant": "dropblock"}}],
        },
        "report": True,
    }
    for dotted, value in changes.items():
        node = spec
        keys = dotted.split(".")
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        if value is _DELETE:
            node.pop(keys[-1], None)
        else:
            node[keys[-1]] = value
    return spec


_DELETE = object()


@dataclass
class Case:
    name: str
    argv: list[str]  # {tmp} is this case's own folder, {study} the finished study's work directory
    setup: Callable[[Path], None] | None = None
    expect_rc: int = 2
    timeout: float = 60.0
    absent: list[str] = field(default_factory=list)  # paths (under {tmp}) that must not exist after
    env: dict[str, str] = field(default_factory=dict)
    help_ok: bool = False  # the command's help on stdout is the answer (no verb at all)


@dataclass
class Outcome:
    case: Case
    rc: int | None
    seconds: float
    stderr: str
    stdout: str
    problems: list[str]

    @property
    def good(self) -> bool:
        return not self.problems


def write(path: Path, text: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)


def spec_file(name: str, spec: dict[str, Any] | str) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        write(tmp / name, spec if isinstance(spec, str) else yaml.safe_dump(spec, sort_keys=False))

    return setup


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


DEAD = f"http://127.0.0.1:{free_port()}"


def copy_study(corrupt: Callable[[Path], None] | None = None) -> Callable[[Path], None]:
    """Setup: this case's own copy of the finished study (``{tmp}/w``), then ``corrupt`` on its study.json."""

    def setup(tmp: Path) -> None:
        shutil.copytree(STUDY_DIR, tmp / "w")
        state = tmp / "w" / "audit" / "study.json"
        text = state.read_text()
        # the copy's stores live in the copy
        write(state, text.replace(str(STUDY_DIR), str(tmp / "w")))
        if corrupt is not None:
            corrupt(state)

    return setup


STUDY_DIR = Path()


def state_edit(change: Callable[[dict[str, Any]], Any]) -> Callable[[Path], None]:
    def corrupt(state: Path) -> None:
        data = json.loads(state.read_text())
        result = change(data)
        state.write_text(json.dumps(data if result is None else result))

    return corrupt


def cases() -> list[Case]:
    c: list[Case] = []
    T = [
        "train",
        "--set",
        "data.name=synthetic",
        "--set",
        "data.synthetic_size=64",
        "--set",
        "train.epochs=1",
    ]
    # --- files the tool reads ----------------------------------------------------------------
    for verb, argv in (
        ("train", ["train", "--config", "{tmp}/in", "--out", "{tmp}/out"]),
        ("study", ["study", "run", "{tmp}/in", "--workdir", "{tmp}/w"]),
    ):
        c += [
            Case(f"{verb}: input file missing", argv, absent=["out", "w"]),
            Case(f"{verb}: input is a directory", argv, lambda t: (t / "in").mkdir(), absent=["out", "w"]),
            Case(
                f"{verb}: input is binary",
                argv,
                lambda t: write(t / "in", b"\x89PNG\r\n\x1a\n\xff\xfe\x00"),
                absent=["out", "w"],
            ),
            # an empty trial config is every default (not an error); an empty study spec names no study
            Case(
                f"{verb}: input is empty",
                argv + ([*T[1:], "--set", "train.device=cpu"] if verb == "train" else []),
                lambda t: write(t / "in", ""),
                expect_rc=0 if verb == "train" else 2,
                absent=[] if verb == "train" else ["w"],
            ),
            Case(
                f"{verb}: input is a YAML list",
                argv,
                lambda t: write(t / "in", "- 1\n- 2\n"),
                absent=["out", "w"],
            ),
            Case(
                f"{verb}: input is not YAML",
                argv,
                lambda t: write(t / "in", "a: [1, 2\nb: }\n"),
                absent=["out", "w"],
            ),
            Case(f"{verb}: input is a scalar", argv, lambda t: write(t / "in", "42\n"), absent=["out", "w"]),
            Case(
                f"{verb}: input is /dev/null",
                [a.replace("{tmp}/in", "/dev/null") for a in argv],
                absent=["out", "w"],
            ),
        ]
    c += [
        Case(
            "train: duplicate key",
            ["train", "--config", "{tmp}/in", "--out", "{tmp}/out"],
            spec_file("in", "reg:\n  alpha: 1.0\n  alpha: 2.0\n"),
            absent=["out"],
        ),
        Case(
            "train: duplicate section",
            ["train", "--config", "{tmp}/in", "--out", "{tmp}/out"],
            spec_file("in", "reg: {alpha: 1.0}\ntrain: {epochs: 1}\nreg: {drop_prob: 0.2}\n"),
            absent=["out"],
        ),
        Case(
            "train: unknown key in config",
            ["train", "--config", "{tmp}/in", "--out", "{tmp}/out"],
            spec_file("in", "reg: {alhpa: 1.0}\n"),
            absent=["out"],
        ),
        Case(
            "study: duplicate key in spec",
            ["study", "run", "{tmp}/in", "--workdir", "{tmp}/w"],
            spec_file("in", yaml.safe_dump(tiny_spec()) + "name: again\n"),
            absent=["w"],
        ),
        Case(
            "study: unknown top-level key",
            ["study", "run", "{tmp}/in", "--workdir", "{tmp}/w"],
            spec_file("in", tiny_spec(serach={"num_samples": 2})),
            absent=["w"],
        ),
    ]
    # --- --set -------------------------------------------------------------------------------
    for _i, (override, why) in enumerate(
        [
            ("data=5", "a section set to a scalar"),
            ("reg=bdrop_dml", "a section set to a name"),
            ("reg.alpha=abc", "not a number"),
            ("reg.alpha=-1", "negative alpha"),
            ("reg.alpha=nan", "nan"),
            ("reg.alpha=inf", "inf"),
            ("reg.variant=bogus", "unknown variant"),
            ("reg.drop_prob=1.5", "p > 1"),
            ("reg.block_size=0", "block size 0"),
            ("train.epochs=0", "zero epochs"),
            ("train.batch_size=0", "batch 0"),
            ("model.name=bogus", "unknown model"),
            ("data.name=bogus", "unknown data"),
            ("data.subset=-5", "negative subset"),
            ("nokey", "no ="),
            ("=5", "empty key"),
            ("reg.alpha.x=1", "a value used as a section"),
            ("train.device=cuda", "cuda on a machine without one"),
        ]
    ):
        c.append(
            Case(
                f"train --set {override} ({why})",
                [*T, "--set", override, "--out", "{tmp}/out"],
                absent=["out"],
            )
        )
    # --- destinations --------------------------------------------------------------------------
    c += [
        Case("train --out /proc/x", [*T, "--out", "/proc/rblock-audit/x"]),
        Case("train --out under a file", [*T, "--out", "{tmp}/f/run"], lambda t: write(t / "f", "x")),
        Case("train --out is a file", [*T, "--out", "{tmp}/f"], lambda t: write(t / "f", "x")),
        Case("train --resume without --out", [*T, "--resume"]),
        Case(
            "train --resume of a missing dir", [*T, "--resume", "--out", "{tmp}/nothing"], absent=["nothing"]
        ),
        Case(
            "train --resume of an empty dir",
            [*T, "--resume", "--out", "{tmp}/empty"],
            lambda t: (t / "empty").mkdir(),
        ),
        Case(
            "train --resume of another run's dir",
            ["train", "--config", "{tmp}/other.yaml", "--resume", "--out", "{tmp}/run"],
            setup=lambda t: (
                train_into(t / "run"),
                spec_file(
                    "other.yaml",
                    {
                        "data": TINY_BASE["data"],
                        "reg": {"alpha": 5.0},
                        "train": {"epochs": 1, "device": "cpu"},
                    },
                )(t),
            ),
        ),
        Case(
            "train: cifar10 data missing",
            [
                "train",
                "--set",
                "data.name=cifar10",
                "--set",
                "data.root={tmp}/nodata",
                "--set",
                "data.download=false",
                "--out",
                "{tmp}/out",
            ],
            absent=["out"],
        ),
        Case(
            "study run --workdir /proc/x",
            ["study", "run", "{tmp}/in", "--workdir", "/proc/rblock-audit"],
            spec_file("in", tiny_spec()),
        ),
        Case(
            "study run --workdir is a file",
            ["study", "run", "{tmp}/in", "--workdir", "{tmp}/f"],
            lambda t: (spec_file("in", tiny_spec())(t), write(t / "f", "x")),
        ),
        Case(
            "study run --workdir under a file",
            ["study", "run", "{tmp}/in", "--workdir", "{tmp}/f/w"],
            lambda t: (spec_file("in", tiny_spec())(t), write(t / "f", "x")),
        ),
    ]
    # --- names, URIs, clusters ---------------------------------------------------------------
    run = ["study", "run", "{tmp}/in", "--workdir", "{tmp}/w"]
    for name in ("mlflow.db", "optuna.db", "ray", "mlartifacts", "../up", "a/b", "", ".hidden", " spaced "):
        c.append(
            Case(
                f"study run --name {name!r}",
                [*run, "--name", name],
                spec_file("in", tiny_spec()),
                absent=["w", "up"],
            )
        )
    for flag, uri in (
        ("--tracking-uri", "garbage"),
        ("--tracking-uri", "gopher://host/x"),
        ("--tracking-uri", "sqlite:////nonexistent-audit/dir/m.db"),
        ("--tracking-uri", DEAD),
        ("--optuna-storage", "garbage"),
        ("--optuna-storage", "sqlite:////nonexistent-audit/dir/o.db"),
        ("--optuna-storage", "postgresql://u:SECRETPW@127.0.0.1:1/optuna"),
    ):
        c.append(
            Case(
                f"study run {flag} {uri}",
                [*run, flag, uri],
                spec_file("in", tiny_spec()),
                absent=["w/audit/study.json"],
                timeout=60,
            )
        )
    c += [
        Case(
            "study run --address dead",
            [*run, "--address", f"127.0.0.1:{free_port()}", "--tracking-uri", DEAD, "--storage", "{tmp}/st"],
            spec_file("in", tiny_spec()),
            absent=["w/audit/study.json"],
            timeout=60,
        ),
        Case(
            "study run --address dead (local stores)",
            [*run, "--address", f"127.0.0.1:{free_port()}"],
            spec_file("in", tiny_spec()),
            absent=["w/audit/study.json"],
            timeout=60,
        ),
    ]
    # --- specs that are silently wrong or late today --------------------------------------------
    grid = {
        "reg.alpha": {"type": "categorical", "values": [0.5, 1.0]},
        "reg.drop_prob": {"type": "categorical", "values": [0.1, 0.2]},
    }
    for why, spec in (
        (
            "grid with num_samples",
            tiny_spec(**{"space": grid, "search.algorithm": "grid", "search.num_samples": 3}),
        ),
        (
            "grid with a partial point",
            tiny_spec(
                **{
                    "space": grid,
                    "search.algorithm": "grid",
                    "search.num_samples": _DELETE,
                    "search.points": [{"reg.alpha": 0.5}],
                }
            ),
        ),
        ("top_k > num_samples", tiny_spec(**{"seeds.top_k": 5})),
        ("gpus with device cpu", tiny_spec(**{"resources.gpus": 1})),
        ("device cuda with gpus 0", tiny_spec(**{"base.train.device": "cuda"})),
        ("gpus the machine lacks", tiny_spec(**{"resources.gpus": 1, "base.train.device": "auto"})),
        ("cpus the machine lacks", tiny_spec(**{"resources.cpus": 512})),
        ("cpus 0", tiny_spec(**{"resources.cpus": 0})),
        (
            "from_study missing",
            tiny_spec(**{"seeds.arms": [{"label": "other", "from_study": "nosuchstudy"}]}),
        ),
        ("seeds reuse the search seed", tiny_spec(**{"seeds.seeds": [0, 1]})),
        ("space.seed", tiny_spec(**{"space": {"seed": {"type": "int", "low": 0, "high": 9}}})),
        (
            "space key unknown",
            tiny_spec(**{"space": {"reg.alhpa": {"type": "uniform", "low": 0, "high": 1}}}),
        ),
        (
            "loguniform low 0",
            tiny_spec(**{"space": {"reg.alpha": {"type": "loguniform", "low": 0, "high": 1}}}),
        ),
        (
            "uniform low > high",
            tiny_spec(**{"space": {"reg.drop_prob": {"type": "uniform", "low": 0.4, "high": 0.1}}}),
        ),
        ("categorical empty", tiny_spec(**{"space": {"reg.variant": {"type": "categorical", "values": []}}})),
        ("unknown metric", tiny_spec(**{"metric": "val_acccc"})),
        ("unknown algorithm", tiny_spec(**{"search.algorithm": "bogus"})),
        ("num_samples 0", tiny_spec(**{"search.num_samples": 0})),
        ("max_concurrent 0", tiny_spec(**{"search.max_concurrent": 0})),
        (
            "grace_period > epochs",
            tiny_spec(**{"scheduler": {"type": "asha", "grace_period": 5, "reduction_factor": 2}}),
        ),
        (
            "duplicate arm labels",
            tiny_spec(
                **{
                    "seeds.arms": [
                        {"label": "a", "set": {"reg.variant": "dropblock"}},
                        {"label": "a", "set": {"reg.variant": "none"}},
                    ]
                }
            ),
        ),
        (
            "arm label top1",
            tiny_spec(**{"seeds.arms": [{"label": "top1", "set": {"reg.variant": "dropblock"}}]}),
        ),
        ("report baseline not an arm", tiny_spec(**{"report": {"baseline": "nosucharm"}})),
        (
            "cifar10 data missing",
            tiny_spec(
                **{"base.data": {"name": "cifar10", "root": "/nonexistent-audit/data", "download": False}}
            ),
        ),
    ):
        c.append(
            Case(f"study run: {why}", run, spec_file("in", spec), absent=["w/audit/study.json"], timeout=90)
        )
    c.append(
        Case(
            "study run: the study already exists",
            ["study", "run", "{tmp}/in", "--workdir", "{tmp}/w"],
            lambda t: (copy_study()(t), spec_file("in", tiny_spec())(t)),
        )
    )
    # --- state and stores read back ----------------------------------------------------------------
    corrupt_states: list[tuple[str, Callable[[Path], None]]] = [
        ("truncated study.json", lambda s: s.write_text(s.read_text()[:40])),
        ("{} study.json", lambda s: s.write_text("{}")),
        ("list study.json", lambda s: s.write_text("[1, 2]")),
        ("binary study.json", lambda s: s.write_bytes(b"\xff\xfe\x00\x01")),
        ("study.json without tracking_uri", state_edit(lambda d: d.pop("tracking_uri"))),
        ("study.json with a bad spec", state_edit(lambda d: d.__setitem__("spec", {"name": 5}))),
        ("study.json from the future", state_edit(lambda d: d.__setitem__("format", 999))),
        ("study.json with a dead server", state_edit(lambda d: d.__setitem__("tracking_uri", DEAD))),
    ]
    # not errors: report reads only the stores study.json names (not its spec); status and report of a
    # state of another format read what the stores hold (only resume depends on the format's meaning)
    readable = {
        ("report --experiment", "study.json with a bad spec"),
        ("study status", "study.json from the future"),
        ("report --experiment", "study.json from the future"),
    }
    for why, corrupt in corrupt_states:
        for verb in (
            ["study", "status", "audit"],
            ["study", "resume", "audit"],
            ["report", "--experiment", "audit"],
        ):
            c.append(
                Case(
                    f"{' '.join(verb[:2])}: {why}",
                    [*verb, "--workdir", "{tmp}/w"],
                    copy_study(corrupt),
                    expect_rc=0 if (" ".join(verb[:2]), why) in readable else 2,
                    timeout=60,
                )
            )
    c += [
        Case(
            "study status: no such study", ["study", "status", "nosuch", "--workdir", "{tmp}/w"], copy_study()
        ),
        Case(
            "study status: a folder that is not a study",
            ["study", "status", "{tmp}/plain"],
            lambda t: (t / "plain").mkdir(),
        ),
        Case(
            "study resume: no such study", ["study", "resume", "nosuch", "--workdir", "{tmp}/w"], copy_study()
        ),
        Case(
            "study resume: a finished study",
            ["study", "resume", "audit", "--workdir", "{tmp}/w"],
            copy_study(),
            expect_rc=0,
            timeout=120,
        ),
        Case(
            "report: no such experiment",
            ["report", "--experiment", "nosuch", "--workdir", "{tmp}/w"],
            copy_study(),
        ),
        Case(
            "report: experiment Default",
            [
                "report",
                "--experiment",
                "Default",
                "--workdir",
                "{tmp}/w",
                "--tracking-uri",
                "sqlite:///{tmp}/w/mlflow.db",
            ],
            copy_study(),
        ),
        Case(
            "report: --metric bogus",
            ["report", "--experiment", "audit", "--workdir", "{tmp}/w", "--metric", "bogus"],
            copy_study(),
        ),
        Case(
            "report: --baseline bogus",
            ["report", "--experiment", "audit", "--workdir", "{tmp}/w", "--baseline", "bogus"],
            copy_study(),
        ),
        Case(
            "report: --tracking-uri garbage", ["report", "--experiment", "audit", "--tracking-uri", "garbage"]
        ),
        Case(
            "report: --tracking-uri typo creates nothing",
            ["report", "--experiment", "audit", "--tracking-uri", "sqlite:///{tmp}/typo/m.db"],
            absent=["typo"],
        ),
        Case(
            "report: --tracking-uri missing file creates nothing",
            ["report", "--experiment", "audit", "--tracking-uri", "sqlite:///{tmp}/m.db"],
            absent=["m.db"],
        ),
        Case(
            "report: --tracking-uri not a store",
            ["report", "--experiment", "audit", "--tracking-uri", "sqlite:///{tmp}/f.db"],
            lambda t: write(t / "f.db", "not sqlite"),
        ),
        Case(
            "report: --tracking-uri dead server",
            ["report", "--experiment", "audit", "--tracking-uri", DEAD],
            timeout=60,
        ),
        Case(
            "report: --out /proc/x",
            ["report", "--experiment", "audit", "--workdir", "{tmp}/w", "--out", "/proc/rblock-audit"],
            copy_study(),
        ),
        Case(
            "report: --out is a file",
            ["report", "--experiment", "audit", "--workdir", "{tmp}/w", "--out", "{tmp}/f"],
            lambda t: (copy_study()(t), write(t / "f", "x")),
        ),
        Case(
            "report: --significance 2",
            ["report", "--experiment", "audit", "--workdir", "{tmp}/w", "--significance", "2"],
            copy_study(),
        ),
        Case(
            "report: --significance 0",
            ["report", "--experiment", "audit", "--workdir", "{tmp}/w", "--significance", "0"],
            copy_study(),
        ),
        Case(
            "report: --resamples 5",
            ["report", "--experiment", "audit", "--workdir", "{tmp}/w", "--resamples", "5"],
            copy_study(),
        ),
        Case(
            "report: --alpha (old name)",
            ["report", "--experiment", "audit", "--workdir", "{tmp}/w", "--alpha", "0.05"],
            copy_study(),
        ),
        Case(
            "report: --workdir missing",
            ["report", "--experiment", "audit", "--workdir", "{tmp}/nothing"],
            absent=["nothing"],
        ),
        Case(
            "study list: --workdir missing",
            ["study", "list", "--workdir", "{tmp}/nothing"],
            absent=["nothing"],
        ),
        Case(
            "study list: an empty workdir",
            ["study", "list", "--workdir", "{tmp}/empty"],
            lambda t: (t / "empty").mkdir(),
            expect_rc=0,
        ),
        Case(
            "study list: one study unreadable",
            ["study", "list", "--workdir", "{tmp}/w"],
            copy_study(lambda s: s.write_text("{")),
            expect_rc=0,
        ),
        Case("cli: unknown verb", ["frobnicate"]),
        Case("cli: no verb", [], help_ok=True),
        Case("cli: study without action", ["study"]),
        Case("cli: unknown option", ["train", "--frobnicate"]),
    ]
    return c


def train_into(out: Path) -> None:
    subprocess.run(
        [
            *CLI,
            "train",
            "--set",
            "data.name=synthetic",
            "--set",
            "data.synthetic_size=64",
            "--set",
            "train.epochs=1",
            "--set",
            "train.device=cpu",
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
    )


def judge(case: Case, tmp: Path) -> Outcome:
    if case.setup is not None:
        case.setup(tmp)
    argv = [a.replace("{tmp}", str(tmp)) for a in case.argv]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RBLOCK_", "MLFLOW_", "RAY_ADDRESS"))}
    env.update(case.env)
    start = time.perf_counter()
    try:
        done = subprocess.run(
            CLI + argv, capture_output=True, text=True, timeout=case.timeout, cwd=tmp, env=env
        )
        rc: int | None = done.returncode
        stderr, stdout = done.stderr, done.stdout
    except subprocess.TimeoutExpired as exc:
        rc, stderr, stdout = None, str(exc.stderr or ""), str(exc.stdout or "")
    seconds = time.perf_counter() - start
    problems: list[str] = []
    if rc is None:
        problems.append(f"hung (killed after {case.timeout:.0f} s)")
    elif rc != case.expect_rc:
        problems.append(f"exit {rc}, not {case.expect_rc}")
    if "Traceback" in stderr or "Traceback" in stdout:
        problems.append("traceback")
    lines = [line for line in stderr.splitlines() if line.strip()]
    if case.expect_rc == 2 and rc is not None and not (case.help_ok and "usage:" in stdout):
        if len(lines) != 1:
            problems.append(f"{len(lines)} lines on stderr")
        if not any(line.startswith(("rblock-tune: error:", "rblock-tune: ")) for line in lines):
            problems.append("no 'rblock-tune: error:' line")
    for path in case.absent:
        if (tmp / path).exists():
            problems.append(f"left {path}")
    if "SECRETPW" in stderr + stdout:
        problems.append("printed a password")
    for written in tmp.rglob("*.json"):
        try:
            if "SECRETPW" in written.read_text(errors="replace"):
                problems.append(f"wrote a password into {written.relative_to(tmp)}")
        except OSError:
            pass
    return Outcome(case, rc, seconds, stderr, stdout, problems)


def make_study(root: Path) -> Path:
    workdir = root / "study"
    spec = root / "audit.yaml"
    spec.write_text(yaml.safe_dump(tiny_spec(), sort_keys=False))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RBLOCK_", "MLFLOW_", "RAY_ADDRESS"))}
    done = subprocess.run(
        [*CLI, "study", "run", str(spec), "--workdir", str(workdir)], capture_output=True, text=True, env=env
    )
    if done.returncode != 0:
        sys.exit(f"could not make the audit's study:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return workdir


def main() -> int:
    global STUDY_DIR
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", default="", help="only cases whose name holds this text")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--show", action="store_true", help="print each case's stderr")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="rblock-audit-"))
    try:
        selected = [case for case in cases() if args.k in case.name]
        if any("{tmp}/w" in " ".join(case.argv) and case.setup is not None for case in selected):
            start = time.perf_counter()
            STUDY_DIR = make_study(root)
            print(f"made the audit's study in {time.perf_counter() - start:.0f} s", flush=True)
        folders = []
        for i, _case in enumerate(selected):
            folder = root / f"case{i:03d}"
            folder.mkdir()
            folders.append(folder)
        width = max(len(case.name) for case in selected)
        outcomes = []
        with ThreadPoolExecutor(args.jobs) as pool:
            for o in pool.map(judge, selected, folders):  # in order, each as soon as it is known
                outcomes.append(o)
                verdict = "good" if o.good else "BAD: " + "; ".join(o.problems)
                rc = "hang" if o.rc is None else str(o.rc)
                first = next((line for line in o.stderr.splitlines() if line.strip()), "")
                print(f"{o.case.name:<{width}}  exit {rc:>4}  {o.seconds:5.1f} s  {verdict}", flush=True)
                if args.show or not o.good:
                    print(f"    {first[:300]}", flush=True)
        good = sum(o.good for o in outcomes)
        print(f"\n{good} of {len(outcomes)} cases good; {len(outcomes) - good} bad")
        return 0 if good == len(outcomes) else 1
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
