"""The ``rblock-tune`` command line.

Verbs are thin: they parse arguments, call library code, and turn the project's errors
into one line on stderr with exit code 2 (3 when training diverged, 130 on Ctrl-C).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from rblock_tune import __version__
from rblock_tune._files import ensure_writable_dir
from rblock_tune._stores import without_userinfo
from rblock_tune.errors import ConfigError, DivergedError, RBlockError
from rblock_tune.layout import (
    BEST_CONFIG_FILE,
    CHECKPOINT_FILE,
    METRICS_FILE,
    PHASE_SEARCH,
    PHASE_SEEDS,
    RACE_STATE_FILE,
    RECORDING_FILE,
    SCHEDULED_DROP_PROB,
    STATE_FILE,
    mlflow_runs_url,
)

__all__ = ["main"]

log = logging.getLogger("rblock_tune")

EXIT_USER_ERROR = 2
EXIT_DIVERGED = 3
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, like every other user error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="rblock-tune",
        description="Train and study R-Block, DropBlock and dropout on CIFAR-style image data.",
    )
    parser.add_argument("--version", action="version", version=f"rblock-tune {__version__}")
    loudness = parser.add_mutually_exclusive_group()
    loudness.add_argument(
        "-q", "--quiet", action="store_true", help="warnings and errors only (a study: failures, summaries)"
    )
    loudness.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="a study also shows Ray's trial tables and logs (default: in WORKDIR/NAME/study.log)",
    )
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)

    train = verbs.add_parser(
        "train",
        help="train one trial (R-Block or a baseline) into a run directory",
        description=(
            "Train one trial. The config comes from defaults, then --config, then each --set. "
            "Writes DIR/metrics.json and DIR/checkpoint.pt after every epoch."
        ),
    )
    train.add_argument("--config", metavar="FILE.yaml", help="YAML file with nested trial keys")
    train.add_argument(
        "--set",
        dest="overrides",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="override one dotted key, e.g. --set reg.alpha=1.0 (repeatable)",
    )
    train.add_argument(
        "--out",
        metavar="DIR",
        help="run directory (default: rblock_runs/train-<variant>-<model>-s<seed>-<time>)",
    )
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its last checkpoint",
    )
    train.add_argument(
        "--no-progress", action="store_true", help="no progress bar (default: shown on a terminal)"
    )
    study = verbs.add_parser(
        "study",
        help="run, resume or inspect a study (Ray Tune + Optuna + MLflow)",
        description="Studies: an Optuna search with ASHA on Ray Tune, then a seed phase, tracked in MLflow.",
    )
    actions = study.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    run = actions.add_parser("run", help="run a study spec (search_spaces/*.yaml)")
    run.add_argument("spec", metavar="SPEC.yaml")
    run.add_argument(
        "--set",
        dest="overrides",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="override a spec key by dotted path, e.g. --set search.num_samples=4 (repeatable)",
    )
    run.add_argument("--name", help="study name (default: the spec's name)")
    run.add_argument("--workdir", default="rblock_runs", help="work directory (default: ./rblock_runs)")
    run.add_argument("--address", help="join an existing Ray cluster (e.g. auto or HOST:6379)")
    run.add_argument(
        "--storage",
        default=os.environ.get("RBLOCK_STORAGE"),
        help="Ray results and checkpoints (default: $RBLOCK_STORAGE, else WORKDIR/ray); shared for a cluster",
    )
    run.add_argument(
        "--tracking-uri",
        default=os.environ.get("RBLOCK_TRACKING_URI"),
        help="MLflow tracking URI (default: $RBLOCK_TRACKING_URI, else sqlite:///WORKDIR/mlflow.db)",
    )
    run.add_argument(
        "--optuna-storage",
        default=os.environ.get("RBLOCK_OPTUNA_STORAGE"),
        help="Optuna storage URL, e.g. postgresql://USER:PASS@HOST:5432/optuna "
        "(default: $RBLOCK_OPTUNA_STORAGE, else sqlite:///WORKDIR/optuna.db)",
    )
    for action in ("resume", "status"):
        sub = actions.add_parser(action, help=f"{action} a study by name or folder")
        sub.add_argument("study", metavar="NAME|DIR")
        sub.add_argument("--workdir", default="rblock_runs", help="work directory holding NAME")
    export = actions.add_parser(
        "export",
        help="write a finished study's search as a recording: every trial's values and learning curves",
        description="Write a finished study's search trials (searched values, status, per-epoch "
        "val/test accuracy, train loss and epoch time) to one JSON file, which "
        "benchmarks/bench_search.py replays search strategies against.",
    )
    export.add_argument("study", metavar="NAME|DIR")
    export.add_argument("--workdir", default="rblock_runs", help="work directory holding NAME")
    export.add_argument(
        "--out", metavar="FILE.json", help=f"where to write it (default: the study's folder/{RECORDING_FILE})"
    )
    listing = actions.add_parser("list", help="every study of a work directory: state, trials, best")
    listing.add_argument("--workdir", default="rblock_runs", help="work directory (default: ./rblock_runs)")
    report = verbs.add_parser(
        "report",
        help="compare arms over seeds: tables, figures, report.md and report.html",
        description=(
            "Read a study (MLflow experiment) and compare every arm with a baseline over seeds: paired "
            "tests, bootstrap intervals, effect sizes, Holm correction, power; writes comparisons.csv, "
            "runs.csv, figures/*.png, report.md and a self-contained report.html."
        ),
    )
    report.add_argument("--experiment", required=True, help="MLflow experiment = the study name")
    report.add_argument(
        "--tracking-uri",
        help="where the study tracked (default: the study's own, from WORKDIR/NAME/study.json, "
        "else sqlite:///WORKDIR/mlflow.db)",
    )
    report.add_argument(
        "--workdir", default="rblock_runs", help="work directory of the study (default: ./rblock_runs)"
    )
    report.add_argument("--out", help="output folder (default: WORKDIR/NAME/report)")
    report.add_argument("--metric", default="test_acc", help="compared metric (default: test_acc)")
    report.add_argument(
        "--baseline", help="arm to compare with (default: the arm running dropblock, dropout, ...)"
    )
    report.add_argument(
        "--significance", type=float, default=0.05, help="significance level after Holm (default: 0.05)"
    )
    report.add_argument("--alpha", type=float, default=None, help=argparse.SUPPRESS)  # its earlier name
    report.add_argument(
        "--resamples", type=int, default=10000, help="bootstrap resamples of the intervals (default: 10000)"
    )
    report.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default: 0)")
    report.add_argument(
        "--publish",
        action="store_true",
        help="also put the result on the study's MLflow parent run (per-arm metrics and decisions, the "
        "report as artifacts), as a study's own report step does",
    )
    return parser


def _report_tracking_uri(args: argparse.Namespace) -> str:
    from rblock_tune.tuning._workdir import MLFLOW_DB, read_state

    if args.tracking_uri:
        return str(args.tracking_uri)
    state = Path(args.workdir) / args.experiment / STATE_FILE
    if state.is_file():
        from rblock_tune.tuning._workdir import recorded_url  # the password comes from the environment

        return recorded_url(read_state(state), "tracking_uri", state)
    db = Path(args.workdir) / MLFLOW_DB
    if db.is_file():
        return f"sqlite:///{db.resolve()}"
    raise ConfigError(
        f"no study {args.experiment!r} in {args.workdir} (no {state} or {db}); pass --tracking-uri "
        "(e.g. sqlite:///path/mlflow.db or http://host:5000) or --workdir"
    )


def _cmd_report(args: argparse.Namespace) -> int:
    from rblock_tune.analysis import write_report

    if args.alpha is not None:
        raise ConfigError(
            f"--alpha is now --significance (the significance level; alpha is the KL weight): "
            f"pass --significance {args.alpha}"
        )
    if args.resamples < 100:
        raise ConfigError(f"--resamples {args.resamples} is too few for a BCa interval: use 1000 or more")
    out = Path(args.out) if args.out else Path(args.workdir) / args.experiment / "report"
    tracking_uri = _report_tracking_uri(args)
    ensure_writable_dir(out, "--out" if args.out else "report folder", keep=False)
    result = write_report(
        args.experiment,
        tracking_uri,
        out,
        metric=args.metric,
        baseline=args.baseline,
        significance=args.significance,
        n_resamples=args.resamples,
        seed=args.seed,
    )
    columns = ["arm", "n", "mean_diff", "ci_low", "ci_high", "p_holm", "significant"]
    if "decision" in result.comparisons:  # a race's intervals and decisions (analysis.race_record)
        columns[1:2] = ["n", "n_pairs"]
        columns.append("decision")
    shown = result.comparisons[columns]
    published = _publish(result, tracking_uri) if args.publish else None
    print(f"{args.experiment}: {args.metric} of each arm against {result.baseline} ({result.phase} runs)")
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    for caveat in result.caveats:
        print(f"caveat: {caveat}")
    print(f"report: {result.html}  (and report.md, comparisons.csv, runs.csv, figures/ in {result.out})")
    if args.publish:
        where = f"run {published}" if published else "nowhere: the experiment has no study parent run"
        print(f"published: {where}")
    return 0


def _publish(result: Any, tracking_uri: str) -> str | None:
    """Put a written report on the study's parent run (:mod:`rblock_tune.analysis.publish`)."""
    from mlflow.tracking import MlflowClient

    from rblock_tune.analysis.publish import publish_report

    return publish_report(result, MlflowClient(tracking_uri=tracking_uri))


def _study_report(result: Any) -> tuple[Path | None, str | None]:
    """The study's ``report`` step, once it has finished: the report in ``<workdir>/<study>/report/``.
    A report that cannot be made (one arm left after divergences, say) does not fail the finished
    study: the reason comes back, and ``rblock-tune report`` can be run again once it is fixed."""
    settings = result.spec.report
    if settings is None:
        return None, None
    from rblock_tune.analysis import write_report

    try:
        written = write_report(
            result.name,
            result.tracking_uri,
            result.state_file.parent / "report",
            metric=settings.metric,
            baseline=settings.baseline,
            significance=settings.significance,
        )
    except ConfigError as exc:
        log.warning("report not written: %s", exc)
        return None, str(exc)
    try:  # the answer, on the seeds parent run in MLflow; the report is written either way
        _publish(written, result.tracking_uri)
    except Exception as exc:  # noqa: BLE001 - a finished study does not fail on it
        log.warning("report not put on the MLflow parent run: %s (rblock-tune report --publish)", exc)
    return written.html, None


def _finish_study(result: Any) -> int:
    """Print a study's outcome, and write its report when it finished; the exit code."""
    from rblock_tune.tuning import redact_url

    if not result.finished:
        workdir = result.state_file.parent.parent
        print(
            f"rblock-tune: interrupted ({result.unfinished}); finished trials are kept; continue with: "
            f"rblock-tune study resume {result.name} --workdir {workdir}",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    report, report_error = _study_report(result)
    print(f"study {result.name} finished")
    for i, entry in enumerate(result.best, start=1):
        values = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in entry["overrides"].items()
        )
        metric = {k: v for k, v in entry.items() if k != "overrides"}
        print(f"  best {i}: {values or '(the base config)'}  {metric}")
    if result.spec.race_design() is not None:
        from rblock_tune.tuning import race_summary, read_race_state

        race = read_race_state(result.state_file.parent / RACE_STATE_FILE)
        if race is not None:
            print(f"  {_race_line(race_summary(race))}")
    best_config = result.state_file.parent / BEST_CONFIG_FILE
    if result.spec.space and best_config.is_file():
        print(f"best config: {best_config} (rblock-tune train --config {best_config})")
    print(f"state: {result.state_file}")
    print(f"ray results: {redact_url(result.storage)}")
    optuna_url = redact_url(result.optuna_storage)
    print(f"optuna: {optuna_url}  (optuna-dashboard {shlex.quote(optuna_url)}, then http://127.0.0.1:8080)")
    tracking_shown = redact_url(result.tracking_uri)
    if result.tracking_uri.startswith("http"):
        where = without_userinfo(result.tracking_uri)
        print(f"mlflow: {tracking_shown}")
    else:
        where = "http://127.0.0.1:5000"
        print(f"mlflow: mlflow ui --backend-store-uri {shlex.quote(tracking_shown)}")
    if result.experiment_id is not None:  # MLflow 3 otherwise opens its (empty) GenAI overview
        print(f"mlflow runs: {mlflow_runs_url(where, result.experiment_id)}  (group by rblock.arm)")
    if report_error is not None:
        print(f"report: not written ({report_error})")
    elif report is not None:
        print(f"report: {report}  (and report.md, comparisons.csv, figures/ beside it)")
    return 0


def _print_study_list(workdir: str) -> int:
    """``study list``: one aligned row per study of ``workdir``."""
    from rblock_tune.tuning import list_studies

    rows = list_studies(workdir)
    if not rows:
        print(f"no studies in {workdir} (run one with: rblock-tune study run SPEC.yaml --workdir {workdir})")
        return 0

    def trials(row: dict[str, Any]) -> str:
        if row["trials"] is None:
            return "-"
        planned = row["planned_trials"]
        return str(row["trials"]) if planned is None else f"{row['trials']}/{planned}"

    def best(row: dict[str, Any]) -> str:
        if row["best"] is None:
            return "-"
        return f"{row['metric']} {row['best']:.4f}" if isinstance(row["best"], float) else str(row["best"])

    table = [("STUDY", "STATE", "TRIALS", "SEED RUNS", "BEST")]
    for row in rows:
        seed_runs = "-" if row["seed_runs"] is None else str(row["seed_runs"])
        table.append((row["name"], row["state"], trials(row), seed_runs, best(row)))
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]) - 1)]
    for line in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=False)) + "  " + line[-1])
    for row in rows:
        if row["error"]:
            print(f"note: {row['name']}: {row['error']}")
    return 0


def _verbosity(args: argparse.Namespace) -> int:
    """What a study prints: -q, default or -v (:mod:`rblock_tune.tuning._verbosity`)."""
    from rblock_tune.tuning._verbosity import NORMAL, QUIET, VERBOSE

    if getattr(args, "verbose", False):
        return VERBOSE
    return QUIET if args.quiet else NORMAL


def _print_study_state(status: dict[str, Any]) -> None:
    """The ``state:`` line of ``study status``: running (and where), finished, or how to continue."""
    from rblock_tune.tuning._driver import FINISHED, RUNNING, driver_alive

    driver = status.get("driver") or {}
    if status["state"] == RUNNING:
        checked = "" if driver_alive(driver) else "; another host, not checked from here"
        print(f"state: running (driver pid {driver.get('pid')} on {driver.get('host')}{checked})")
    elif status["state"] == FINISHED:
        print("state: finished")
    else:
        print(
            f"state: interrupted: continue with rblock-tune study resume {status['name']} "
            f"--workdir {status['workdir']}"
        )


def _undecided_why(info: dict[str, Any], max_seeds: int) -> str:
    """Why an arm the race stopped is undecided: futile before its last seed, or out of seeds."""
    if info["decision"] != "undecided":
        return ""
    return " (stopped: futile)" if int(info["n_pairs"]) < max_seeds else " (all its seeds)"


def _race_line(race: dict[str, Any]) -> str:
    """``study status``'s line on a racing seed phase."""
    design = race["design"]
    decided = ", ".join(
        f"{arm} {info['decision']} at {info['n_pairs']} pairs"
        + _undecided_why(info, int(design["max_seeds"]))
        for arm, info in race["decided"].items()
    )
    state = "over" if race["over"] else f"{len(race['live'])} arms live ({', '.join(race['live'])})"
    return (
        f"race against {design['baseline']} on {design['metric']} (alpha {design['alpha']:g}, margin "
        f"{design['margin']:g}, {design['min_seeds']}-{design['max_seeds']} seeds): {state}; decided: "
        f"{decided or 'none yet'}; {race['looks']} looks; runs {race['runs_done']} done, "
        f"{race['runs_started']} started, of the {race['fixed_design_runs']} a fixed design would run"
    )


def _export_study(study: str, workdir: str, out: str | None) -> int:
    """``study export``: the recording, written; one line saying where and what it holds."""
    from rblock_tune.tuning import export_study, locate_study

    target = Path(out) if out else locate_study(study, workdir).parent / RECORDING_FILE
    recording = export_study(study, workdir, target)
    best = recording.best().final(recording.metric) if recording.complete() else None
    shown = "no trial ran every epoch" if best is None else f"best {recording.metric} {best:.4g}"
    print(
        f"exported {len(recording.points)} trials of study {recording.study} "
        f"({recording.total_epochs()} epochs, {shown}) to {target}"
    )
    return 0


def _cmd_study(args: argparse.Namespace) -> int:
    from rblock_tune.tuning import load_study_spec, resume_study, run_study, study_status
    from rblock_tune.tuning._interrupt import catch_interrupts

    if not getattr(args, "verbose", False):  # its INFO lines (creating tables...) are not the study's
        logging.getLogger("mlflow").setLevel(logging.WARNING)
    if args.action == "run":
        # the name quoted: --name 2024 is the string '2024', not a number
        named = [f"name={json.dumps(args.name)}"] if args.name is not None else []
        overrides = list(args.overrides) + named
        spec = load_study_spec(args.spec, overrides)
        args.study_name = spec.name  # for the hint of an interruption
        with catch_interrupts():
            result = run_study(
                spec,
                workdir=args.workdir,
                address=args.address,
                storage=args.storage,
                tracking_uri=args.tracking_uri,
                optuna_storage=args.optuna_storage,
                verbosity=_verbosity(args),
            )
        return _finish_study(result)
    if args.action == "resume":
        with catch_interrupts():
            result = resume_study(args.study, args.workdir, verbosity=_verbosity(args))
        return _finish_study(result)
    if args.action == "list":
        return _print_study_list(args.workdir)
    if args.action == "export":
        return _export_study(args.study, args.workdir, args.out)
    if args.action == "status":
        status = study_status(args.study, args.workdir)
        print(
            f"study {status['name']}: search {'done' if status['search_done'] else 'not done'}, "
            f"seeds {'done' if status['seeds_done'] else 'not done'}"
        )
        _print_study_state(status)
        for phase, counts in status["phases"].items():
            label = {PHASE_SEARCH: "search trials", PHASE_SEEDS: "seed runs"}.get(phase, phase)
            print(f"  {label}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        searched = "; ".join(f"{name} {seeds}" for name, seeds in status["search_seeds"].items() if seeds)
        print(
            f"  seeds: search trials {searched or 'none'}; seed phase {status['seed_phase_seeds'] or 'none'}"
        )
        if status.get("race"):
            print("  " + _race_line(status["race"]))
        if status.get("optuna"):
            print("  optuna: " + ", ".join(f"{k} {v}" for k, v in status["optuna"].items() if v))
        print(f"  best so far: {status['best']}")
        print(f"state file: {status['state_file']}")
        return 0
    raise ConfigError(
        "study needs an action: run, resume, status, list or export (see rblock-tune study --help)"
    )


def _format_record(record: dict[str, Any], epochs: int) -> str:
    def fmt(key: str, spec: str = ".4f") -> str:
        value = record.get(key)
        return "n/a" if value is None else format(value, spec)

    dropped = (
        fmt("drop_rate", ".3f")
        if "drop_rate" in record
        else f"{fmt('drop_rate_a', '.3f')}/{fmt('drop_rate_b', '.3f')}"
    )

    return (
        f"epoch {record['epoch']}/{epochs}  loss {fmt('train_loss')}  train_acc {fmt('train_acc')}  "
        f"val_acc {fmt('val_acc')}  lr {fmt('lr', '.4g')}  p {fmt(SCHEDULED_DROP_PROB, '.3f')}  "
        f"dropped {dropped}  kl_probe {fmt('consistency_kl_probe', '.4f')}  "
        f"{fmt('images_per_second', '.0f')} img/s  {fmt('epoch_seconds', '.1f')} s"
    )


def _cmd_train(args: argparse.Namespace) -> int:
    from rblock_tune.config import load_config, parse_override, with_overrides
    from rblock_tune.trainer import load_run_config, run_training

    if args.resume:
        if not args.out:
            raise ConfigError("--resume needs --out DIR, the run directory to continue")
        if args.config:
            config = load_config(args.config, args.overrides)
        else:
            saved = load_run_config(args.out)
            config = with_overrides(saved, dict(parse_override(o) for o in args.overrides))
        out = Path(args.out)
    else:
        config = load_config(args.config, args.overrides)
        if args.out:
            out = Path(args.out)
        else:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            name = f"train-{config.reg.variant}-{config.model.name}-s{config.seed}-{stamp}"
            out = Path("rblock_runs") / name

    ensure_writable_dir(out, "--out" if args.out else "run directory", keep=False)  # before the data loads
    progress = not args.no_progress and sys.stderr.isatty()
    epochs = config.train.epochs
    shown: list[Path] = []

    def on_epoch(record: dict[str, Any]) -> None:
        if not shown:  # with the first epoch, once every input was accepted (a bad one is one line)
            log.info("run directory: %s", out)
            shown.append(out)
        log.info(_format_record(record, epochs))

    try:
        result = run_training(config, out, resume=args.resume, progress=progress, on_epoch=on_epoch)
    except KeyboardInterrupt:
        print(
            f"rblock-tune: interrupted; finished epochs are saved in {out}; continue with: "
            f"rblock-tune train --out {out} --resume",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    val = result["val_acc"]
    val_text = "n/a" if val is None else f"{val:.4f}"
    print(
        f"{config.reg.variant} {config.model.name} seed {config.seed}: "
        f"val_acc {val_text}  test_acc {result['test_acc']:.4f}  "
        f"({epochs} epoch{'s' if epochs != 1 else ''}, {result['device']})"
    )
    print(f"results: {out / METRICS_FILE}  checkpoint: {out / CHECKPOINT_FILE}")
    return 0


def _interrupted_study(args: argparse.Namespace) -> str | None:
    """The name of the study an interrupted ``study run|resume`` was running: the loaded spec's (with
    ``--name`` and ``--set``), else ``--name`` (interrupted while the spec loaded), else None."""
    if getattr(args, "study_name", None):
        return str(args.study_name)
    if args.action == "resume":
        return str(args.study)
    return str(args.name) if getattr(args, "name", None) else None


def _interruption_hint(args: argparse.Namespace) -> str:
    """What an interrupted verb prints: for a study, the command that continues it."""
    if args.verb != "study" or args.action not in ("run", "resume"):
        return "rblock-tune: interrupted"
    where = getattr(args, "workdir", "rblock_runs")
    name = _interrupted_study(args)
    if name is None:
        return (
            f"rblock-tune: interrupted; finished trials are kept; continue with: rblock-tune study "
            f"resume <the spec's name> --workdir {where}"
        )
    return (
        f"rblock-tune: interrupted; finished trials are kept; continue with: "
        f"rblock-tune study resume {name} --workdir {where}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rblock-tune`` console script; returns the exit code."""
    os.environ.setdefault("MPLBACKEND", "Agg")  # report figures: never a window from the command line
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors end here
        return exc.code if isinstance(exc.code, int) else EXIT_USER_ERROR
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )
    if args.verb is None:
        parser.print_help()
        return EXIT_USER_ERROR
    try:
        commands = {"study": _cmd_study, "report": _cmd_report, "train": _cmd_train}
        return commands[args.verb](args)
    except KeyboardInterrupt:  # a study interrupted mid-phase (train handles its own)
        print(_interruption_hint(args), file=sys.stderr)
        return EXIT_INTERRUPTED
    except DivergedError as exc:
        print(f"rblock-tune: error: {exc}", file=sys.stderr)
        return EXIT_DIVERGED
    except RBlockError as exc:
        print(f"rblock-tune: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
