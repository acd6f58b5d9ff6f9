"""The Docker deployment, checked without a Docker engine: docker/Dockerfile, docker/compose.yaml,
docker/.env.example, docker/requirements.txt, docker/cluster-aws.yaml and .dockerignore.

Each file is parsed (YAML, TOML, a small Dockerfile reader, a .dockerignore matcher) and held to what
the stack relies on: start order, health checks, published ports on BIND_ADDRESS only, no password in a
committed file, pins that agree with pyproject.toml and the Makefile, layer order, a non-root user.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from rblock_tune import __version__

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
DOCKERFILE = DOCKER / "Dockerfile"
COMPOSE = DOCKER / "compose.yaml"
ENV_EXAMPLE = DOCKER / ".env.example"
REQUIREMENTS = DOCKER / "requirements.txt"
CLUSTER = DOCKER / "cluster-aws.yaml"
STACK = DOCKER / "stack.sh"
INITDB = DOCKER / "initdb.sql"
DOCKERIGNORE = ROOT / ".dockerignore"

STACK_IN_IMAGE = "/opt/rblock/docker/stack.sh"
SERVICES = ("postgres", "minio", "minio-init", "mlflow", "ray-head", "ray-worker")
ONE_SHOT = {"minio-init"}
BIND = "${BIND_ADDRESS:-127.0.0.1}"
SECRET_KEY = re.compile(r"PASSWORD|SECRET|TOKEN|(?:^|_)KEY(?:_|$)|ACCESS_KEY", re.IGNORECASE)
REQUIRED_REF = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*:\?[^}]+\}")


# ----------------------------------------------------------------------------------- Dockerfile reader
KNOWN_INSTRUCTIONS = {
    "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
    "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
}  # fmt: skip


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int


@dataclass
class Stage:
    image: str  # as written after FROM
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions of a Dockerfile: comments dropped, backslash continuations joined (comment lines
    inside a continuation dropped, as Docker does). Raises ValueError on an unknown instruction."""
    instructions: list[Instruction] = []
    parts: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue  # also inside a continuation
        if not parts:
            start = number
        if stripped.endswith("\\"):
            parts.append(stripped[:-1].strip())
            continue
        parts.append(stripped)
        keyword, _, args = " ".join(p for p in parts if p).partition(" ")
        parts = []
        if keyword.upper() not in KNOWN_INSTRUCTIONS:
            raise ValueError(f"line {start}: unknown instruction {keyword!r}")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
    if parts:
        raise ValueError(f"line {start}: continuation at the end of the file")
    return instructions


def parse_stages(instructions: list[Instruction]) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults (before the first FROM) and the stages."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            words = [w for w in ins.args.split() if not w.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].lower() == "as" else None
            assert len(words) in (1, 3), f"line {ins.line}: FROM {ins.args}"
            stages.append(Stage(words[0], name))
        elif not stages:
            assert ins.keyword == "ARG", f"line {ins.line}: only ARG may come before the first FROM"
            name, _, default = ins.args.partition("=")
            global_args[name.strip()] = default.strip().strip('"')
        else:
            stages[-1].instructions.append(ins)
    return global_args, stages


def expand(value: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: variables.get(m.group(1), m.group(0)), value)


def key_values(args: str) -> dict[str, str]:
    """KEY=VALUE pairs of ENV, LABEL or ARG (quotes removed)."""
    pairs = {}
    for word in shlex.split(args):
        key, sep, value = word.partition("=")
        assert sep, f"not KEY=VALUE: {word!r} in {args!r}"
        pairs[key] = value
    return pairs


@pytest.fixture(scope="module")
def dockerfile() -> tuple[dict[str, str], dict[str, Stage], list[Stage]]:
    global_args, stages = parse_stages(parse_dockerfile(DOCKERFILE.read_text()))
    named = {s.name: s for s in stages if s.name}
    return global_args, named, stages


def root_image(stage: Stage, named: dict[str, Stage], global_args: dict[str, str]) -> str:
    """The external image a stage is built on, following FROM <stage> and global ARGs."""
    image = expand(stage.image, global_args)
    while image in named:
        image = expand(named[image].image, global_args)
    return image


def stage_chain(stage: Stage, named: dict[str, Stage], global_args: dict[str, str]) -> list[Stage]:
    chain = [stage]
    while (base := expand(chain[-1].image, global_args)) in named:
        chain.append(named[base])
    return chain


def copy_sources(ins: Instruction) -> list[str]:
    words = [w for w in shlex.split(ins.args) if not w.startswith("--")]
    return words[:-1]


def first_index(instructions: list[Instruction], keyword: str, *needles: str) -> int:
    for i, ins in enumerate(instructions):
        if ins.keyword == keyword and all(n in ins.args for n in needles):
            return i
    raise AssertionError(f"no {keyword} with {needles}")


def test_dockerfile_parses_into_known_instructions() -> None:
    instructions = parse_dockerfile(DOCKERFILE.read_text())
    assert instructions[0].keyword in {"ARG", "FROM"}
    assert sum(ins.keyword == "FROM" for ins in instructions) >= 3
    with pytest.raises(ValueError, match="unknown instruction"):
        parse_dockerfile("FROM scratch\nRUNN true\n")
    joined = parse_dockerfile("FROM scratch\nRUN a \\\n  # a comment\n  && b\n")
    assert joined[1] == Instruction("RUN", "a && b", 2)


def test_dockerfile_has_the_gpu_and_cpu_targets(dockerfile: Any) -> None:
    global_args, named, stages = dockerfile
    assert {"gpu", "cpu"} <= named.keys()
    assert stages[-1].name == "gpu", "gpu should be the default target (the last stage)"
    gpu_base = root_image(named["gpu"], named, global_args)
    assert re.fullmatch(r"nvidia/cuda:\d+\.\d+\.\d+-(cudnn\d*-)?runtime-ubuntu\d+\.\d+", gpu_base), gpu_base
    cpu_base = root_image(named["cpu"], named, global_args)
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim-bookworm", cpu_base), cpu_base


def test_dockerfile_base_images_are_pinned(dockerfile: Any) -> None:
    global_args, named, stages = dockerfile
    for stage in stages:
        image = root_image(stage, named, global_args)
        name, _, tag = image.rpartition(":")
        assert name and "/" not in tag, f"{image}: no tag"
        assert tag != "latest" and re.search(r"\d", tag), f"{image}: not a pinned version"
    uv_copies = [
        ins.args
        for s in stages
        for ins in s.instructions
        if ins.keyword == "COPY" and "/uv" in ins.args and "--from=" in ins.args
    ]
    assert uv_copies, "uv is copied from its image"
    for args in uv_copies:
        source = args.split("--from=", 1)[1].split()[0]
        image = root_image(named[source], named, global_args) if source in named else source
        assert re.fullmatch(r"ghcr\.io/astral-sh/uv:\d+\.\d+\.\d+", image), image


def test_dockerfile_targets_run_the_same_python(dockerfile: Any) -> None:
    """Ray refuses a node whose Python (patch level) differs from the cluster's: both flavours use
    PYTHON_VERSION, inside pyproject's requires-python."""
    global_args, named, _ = dockerfile
    version = global_args["PYTHON_VERSION"]
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert Version(version) in SpecifierSet(requires)
    assert re.fullmatch(r"3\.11\.\d+", version), "a patch release: the same in both targets"
    cpu_chain = stage_chain(named["cpu"], named, global_args)
    assert cpu_chain[-1].image == "python:${PYTHON_VERSION}-slim-bookworm"
    gpu_runs = [i.args for s in stage_chain(named["gpu"], named, global_args) for i in s.instructions]
    assert any(re.search(r"uv python install \"?\$\{PYTHON_VERSION\}", args) for args in gpu_runs)
    assert any(re.search(r"uv venv --python \"?\$\{PYTHON_VERSION\}\"? /opt/venv", a) for a in gpu_runs)
    cpu_runs = [i.args for s in cpu_chain for i in s.instructions]
    assert any("uv venv" in args and "/opt/venv" in args for args in cpu_runs)


def test_dockerfile_targets_differ_only_in_the_torch_index(dockerfile: Any) -> None:
    global_args, named, _ = dockerfile
    gpu, cpu = named["gpu"].instructions, named["cpu"].instructions
    assert gpu[0].keyword == cpu[0].keyword == "ARG"
    gpu_index = key_values(gpu[0].args)["TORCH_INDEX_URL"]
    cpu_index = key_values(cpu[0].args)["TORCH_INDEX_URL"]
    assert cpu_index == "https://download.pytorch.org/whl/cpu"
    cuda = re.search(r"nvidia/cuda:(\d+)\.(\d+)", root_image(named["gpu"], named, global_args))
    assert cuda, "the gpu target's base is a CUDA image"
    assert gpu_index == f"https://download.pytorch.org/whl/cu{cuda.group(1)}{cuda.group(2)}", (
        "torch's CUDA build should match the base image's CUDA version"
    )
    assert [(i.keyword, i.args) for i in gpu[1:]] == [(i.keyword, i.args) for i in cpu[1:]]


@pytest.mark.parametrize("target", ["gpu", "cpu"])
def test_dockerfile_target_runs_as_a_non_root_user(dockerfile: Any, target: str) -> None:
    _, named, _ = dockerfile
    instructions = named[target].instructions
    users = [i for i, ins in enumerate(instructions) if ins.keyword == "USER"]
    cmd = first_index(instructions, "CMD")
    assert users and users[-1] < cmd, "USER comes before CMD"
    assert not any(ins.keyword == "ENTRYPOINT" for ins in instructions), "compose and ray up set commands"
    user = instructions[users[-1]].args.split(":")[0]
    assert user not in {"root", "0"}
    assert any(
        ins.keyword == "RUN" and re.search(rf"useradd .*--uid 1000 .*\b{user}\b", ins.args)
        for ins in instructions
    )
    assert json.loads(instructions[cmd].args) == ["rblock-tune", "--help"]
    env: dict[str, str] = {}
    for ins in instructions:
        if ins.keyword == "ENV":
            env.update(key_values(ins.args))
    workdir = [ins.args for ins in instructions if ins.keyword == "WORKDIR"][-1]
    assert env["HOME"] == workdir == f"/home/{user}", "Ray's cluster launcher reads HOME from the image"
    assert env["PATH"].startswith("/opt/venv/bin:")
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["MPLBACKEND"] == "Agg"


@pytest.mark.parametrize("target", ["gpu", "cpu"])
def test_dockerfile_version_label_is_the_project_version(dockerfile: Any, target: str) -> None:
    global_args, named, _ = dockerfile
    assert global_args["RBLOCK_VERSION"] == __version__
    instructions = named[target].instructions
    assert any(ins.keyword == "ARG" and ins.args == "RBLOCK_VERSION" for ins in instructions)
    labels: dict[str, str] = {}
    for ins in instructions:
        if ins.keyword == "LABEL":
            labels.update(key_values(ins.args))
    assert labels["org.opencontainers.image.version"] in {"$RBLOCK_VERSION", "${RBLOCK_VERSION}"}
    assert labels["org.opencontainers.image.title"] == "rblock-tune"
    assert labels["org.opencontainers.image.source"]


@pytest.mark.parametrize("target", ["gpu", "cpu"])
def test_dockerfile_installs_dependencies_before_copying_the_source(dockerfile: Any, target: str) -> None:
    _, named, _ = dockerfile
    instructions = named[target].instructions
    copy_requirements = first_index(instructions, "COPY", "docker/requirements.txt")
    install_requirements = first_index(instructions, "RUN", "pip install", "requirements.txt")
    copy_source = first_index(instructions, "COPY", "rblock_tune/")
    install_project = first_index(instructions, "RUN", "pip install", "--no-deps", "/opt/rblock")
    assert copy_requirements < install_requirements < copy_source < install_project
    early_copies = [
        source
        for ins in instructions[:install_requirements]
        if ins.keyword == "COPY" and "--from=" not in ins.args
        for source in copy_sources(ins)
    ]
    assert early_copies == ["docker/requirements.txt"], "only the pins may invalidate the dependency layer"


def test_dockerfile_has_no_remote_add_and_no_secrets() -> None:
    instructions = parse_dockerfile(DOCKERFILE.read_text())
    for ins in instructions:
        if ins.keyword == "ADD":
            assert not re.search(r"(https?|git)://|git@", ins.args), f"line {ins.line}: remote ADD"
        if ins.keyword in {"ENV", "ARG"}:
            assert not re.search(r"PASSWORD|SECRET|TOKEN", ins.args, re.IGNORECASE), f"line {ins.line}"


# -------------------------------------------------------------------------------------- .dockerignore
def _dockerignore_regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i + 1)
            body = pattern[i + 1 : end]
            out, i = out + "[" + ("^" + body[1:] if body.startswith("!") else body) + "]", end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def dockerignore_rules(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = os.path.normpath(line[1:] if negate else line).lstrip("/")
        rules.append((negate, _dockerignore_regex(pattern)))
    return rules


def is_ignored(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: the last pattern that matches the path or one of its parent folders decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    ignored = False
    for negate, regex in rules:
        if any(regex.fullmatch(c) for c in candidates):
            ignored = not negate
    return ignored


def test_dockerignore_lets_in_what_the_images_copy_and_nothing_else(dockerfile: Any) -> None:
    rules = dockerignore_rules(DOCKERIGNORE.read_text())
    _, _, stages = dockerfile
    sources = {
        source
        for stage in stages
        for ins in stage.instructions
        if ins.keyword == "COPY" and "--from=" not in ins.args
        for source in copy_sources(ins)
    }
    assert sources >= {"docker/requirements.txt", "pyproject.toml", "rblock_tune/", "docker/"}
    for source in sorted(sources):
        assert (ROOT / source).exists(), f"COPY source {source} missing"
        assert not is_ignored(source.rstrip("/"), rules), f"COPY source {source} is in .dockerignore"
    for path in ("rblock_tune/cli.py", "docker/stack.sh", "search_spaces/quickstart.yaml", "README.md"):
        assert not is_ignored(path, rules), path
    for path in (
        "docker/.env",
        ".git/HEAD",
        ".venv/bin/python",
        "rblock_runs/demo/study.json",
        "data/cifar-10-batches-py/data_batch_1",
        "benchmarks/results/bench.json",
        "tests/deploy/test_docker.py",
        "analysis/study_overview.ipynb",
        "mlruns/0/meta.yaml",
        "rblock_tune/__pycache__/cli.cpython-311.pyc",
        "rblock_tune/weights.pt",
    ):
        assert is_ignored(path, rules), f"{path} would be sent to the build"


# ---------------------------------------------------------------------------------------- compose.yaml
def without_comments(text: str) -> str:
    """YAML text without its comments (whole-line and trailing ` # ...`): compose interpolates the rest."""
    lines = [
        re.sub(r"\s+#\s.*$", "", line) for line in text.splitlines() if not line.lstrip().startswith("#")
    ]
    return "\n".join(lines)


@pytest.fixture(scope="module")
def compose_text() -> str:
    """compose.yaml without comments."""
    return without_comments(COMPOSE.read_text())


@pytest.fixture(scope="module")
def compose(compose_text: str) -> dict[str, Any]:
    data = yaml.safe_load(compose_text)
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def interpolations(text: str) -> list[tuple[str, str, str]]:
    """(name, operator, argument) of every ${...} in a compose text ($$ is a literal $)."""
    return re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}", text.replace("$$", ""))


def test_compose_parses_and_has_the_services(compose: dict[str, Any], services: dict[str, Any]) -> None:
    assert "version" not in compose, "the compose specification has no version key"
    assert compose["name"] == "rblock"
    assert set(SERVICES) <= services.keys()


def test_compose_interpolation_is_well_formed(compose_text: str) -> None:
    text = compose_text.replace("$$", "")
    refs = re.findall(r"\$\{[^}]*\}", text)
    assert refs and len(refs) == len(interpolations(compose_text))
    assert "$" not in re.sub(r"\$\{[^}]*\}", "", text), "a $ that is not ${VAR...} (write $$ for a literal)"


def test_compose_long_running_services_have_health_checks(services: dict[str, Any]) -> None:
    for name in SERVICES:
        service = services[name]
        if name in ONE_SHOT:
            assert service.get("restart") == "no", f"{name}: a one-shot (restart: 'no', quoted)"
            continue
        check = service.get("healthcheck") or {}
        assert not check.get("disable"), name
        test = check.get("test")
        assert test and test[0] in {"CMD", "CMD-SHELL"} and len(test) > 1, f"{name}: no health check"
        assert service.get("restart") == "unless-stopped", name


def test_compose_start_order(services: dict[str, Any]) -> None:
    def conditions(name: str) -> dict[str, str]:
        depends = services[name].get("depends_on") or {}
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions"
        return {dep: spec["condition"] for dep, spec in depends.items()}

    assert conditions("minio-init") == {"minio": "service_healthy"}
    assert conditions("mlflow") == {
        "postgres": "service_healthy",
        "minio-init": "service_completed_successfully",
    }
    assert conditions("ray-head") == {"mlflow": "service_healthy"}
    assert conditions("ray-worker") == {"ray-head": "service_healthy"}
    for name in services:
        for dep, condition in conditions(name).items():
            assert dep in services, f"{name} depends on an unknown service {dep}"
            if condition == "service_healthy":
                assert services[dep].get("healthcheck"), f"{name} waits for {dep}'s health: it has no check"

    def after(name: str) -> set[str]:  # every service that starts before `name`
        found: set[str] = set()
        todo = list(conditions(name))
        while todo:
            dep = todo.pop()
            assert dep != name, f"depends_on cycle through {name}"
            if dep not in found:
                found.add(dep)
                todo.extend(conditions(dep))
        return found

    assert after("ray-worker") == {"ray-head", "mlflow", "postgres", "minio-init", "minio"}
    assert {"postgres", "minio", "minio-init"} == after("mlflow")
    assert not after("postgres") and not after("minio")


def test_compose_named_volumes(compose: dict[str, Any], services: dict[str, Any]) -> None:
    declared = set(compose["volumes"])
    assert {"pgdata", "miniodata", "results"} <= declared
    used: dict[str, set[str]] = {}
    for name, service in services.items():
        for volume in service.get("volumes") or []:
            source, target = str(volume).split(":")[:2]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name} uses the undeclared volume {source}"
                used.setdefault(source, set()).add(f"{name}:{target}")
    assert used.keys() == declared, "a declared volume is never used"
    assert "postgres:/var/lib/postgresql/data" in used["pgdata"]
    assert "minio:/data" in used["miniodata"]
    assert {"ray-head:/shared/results", "ray-worker:/shared/results"} <= used["results"]
    for node in ("ray-head", "ray-worker"):
        storage = environment(services[node])["RBLOCK_STORAGE"]
        assert storage.startswith("/shared/results"), "Ray's storage is on the shared results volume"


def test_compose_ray_workers_reserve_gpus_and_scale(services: dict[str, Any]) -> None:
    worker = services["ray-worker"]
    deploy = worker["deploy"]
    assert re.fullmatch(r"\$\{RAY_WORKERS:-\d+\}", str(deploy["replicas"]))
    devices = deploy["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] and d.get("count") for d in devices)
    assert "ports" not in worker and "container_name" not in worker, "replicas cannot share them"
    assert worker.get("shm_size") and services["ray-head"].get("shm_size"), (
        "Ray's object store needs /dev/shm"
    )
    assert environment(services["ray-head"])["RAY_NUM_GPUS"] == "0"
    assert environment(services["ray-head"])["RAY_DASHBOARD_HOST"] == "0.0.0.0"


def test_compose_ports_bind_to_bind_address(services: dict[str, Any]) -> None:
    published: dict[str, set[str]] = {}
    for name, service in services.items():
        for port in service.get("ports") or []:
            assert isinstance(port, str), f"{name}: use the short syntax HOST_IP:HOST_PORT:CONTAINER_PORT"
            assert port.startswith(BIND + ":"), f"{name}: {port} is not bound to {BIND}"
            host_port, container_port = port[len(BIND) + 1 :].split(":")
            published.setdefault(name, set()).add(container_port)
            assert host_port == container_port
    assert {"5000"} <= published["mlflow"]
    assert {"8265", "6379"} <= published["ray-head"]
    assert {"9001"} <= published["minio"]
    assert "postgres" not in published


def test_compose_commits_no_secrets(compose_text: str, services: dict[str, Any]) -> None:
    for name, service in services.items():
        for key, value in environment(service).items():
            if SECRET_KEY.search(key):
                assert REQUIRED_REF.fullmatch(value), f"{name}: {key} must be ${{VAR:?...}}, not a value"
    # credentials inside URLs (postgresql://USER:PASSWORD@..., http://KEY:SECRET@...)
    marked = re.sub(r"\$\{[^}]*\}", lambda m: "<REQ>" if ":?" in m.group() else "<OPT>", compose_text)
    userinfos = re.findall(r"://([^/\s@]*)@", marked)
    assert userinfos, "the database URLs carry credentials"
    for userinfo in userinfos:  # a user alone is fine (its password then comes from PGPASSWORD)
        assert userinfo in ("<REQ>:<REQ>", "<REQ>"), (
            f"credentials in a URL must be required references: {userinfo}"
        )
    # and any `...PASSWORD: value` / `...SECRET=value` outside the environment mappings (list forms, args)
    for line in marked.splitlines():
        for match in re.finditer(r"(?i)(password|secret)\w*\s*[:=]\s*(\S+)", line):
            assert match.group(2) == "<REQ>", line


def test_compose_variables_are_in_the_env_example(compose_text: str) -> None:
    active, documented = env_example_keys()
    refs = interpolations(compose_text)
    required = {name for name, op, _ in refs if op == ":?"}
    assert {"POSTGRES_USER", "POSTGRES_PASSWORD", "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"} <= required
    assert required <= active.keys(), f"required but not in .env.example: {required - active.keys()}"
    names = {name for name, _, _ in refs}
    assert names <= documented, f"not documented in .env.example: {names - documented}"
    for name, op, default in refs:
        if op == ":-" and name in active:
            assert active[name] == default, f".env.example's {name} differs from compose's default"


def test_compose_service_commands_use_stack_sh(services: dict[str, Any]) -> None:
    commands = {"mlflow": "mlflow-server", "ray-head": "ray-head", "ray-worker": "ray-worker"}
    checks = {"mlflow": "mlflow", "ray-head": "ray", "ray-worker": "ray"}
    for name, subcommand in commands.items():
        assert services[name]["command"] == [STACK_IN_IMAGE, subcommand]
        assert services[name]["healthcheck"]["test"] == ["CMD", STACK_IN_IMAGE, "healthcheck", checks[name]]
    text = STACK.read_text()  # written alongside; present once the stack script lands
    for label in (*commands.values(), "healthcheck", "mlflow", "ray"):
        assert re.search(rf"^\s*{re.escape(label)}\s*\)", text, re.MULTILINE), f"stack.sh lacks `{label})`"
    if os.name == "posix":
        assert os.access(STACK, os.X_OK), "docker/stack.sh must be executable"


def test_compose_images_and_builds(services: dict[str, Any]) -> None:
    flavours = {"mlflow": "cpu", "ray-head": "gpu", "ray-worker": "gpu"}
    for name, target in flavours.items():
        service = services[name]
        image = re.fullmatch(
            r"\$\{RBLOCK_IMAGE:-rblock-tune\}:\$\{RBLOCK_TAG:-([^}]+)\}-(\w+)", service["image"]
        )
        assert image, service["image"]
        assert image.group(1) == __version__ and image.group(2) == target
        build = service["build"]
        assert build["target"] == target
        assert (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
    images = {name: services[name]["image"] for name in ("postgres", "minio", "minio-init")}
    assert re.search(r"postgres:16\.\d+", images["postgres"])
    assert re.search(r"minio/minio:RELEASE\.\d{4}-\d\d-\d\dT[\d-]+Z", images["minio"])
    assert re.search(r"minio/mc:RELEASE\.\d{4}-\d\d-\d\dT[\d-]+Z", images["minio-init"])
    assert not any("latest" in image for image in images.values())


def test_compose_wiring(services: dict[str, Any]) -> None:
    mlflow = environment(services["mlflow"])
    head = environment(services["ray-head"])
    worker = environment(services["ray-worker"])
    # the databases named in the URLs are the ones initdb.sql creates, which postgres mounts
    created = set(re.findall(r"CREATE DATABASE\s+(\w+)", INITDB.read_text(), re.IGNORECASE))
    assert {"mlflow", "optuna"} <= created
    assert mlflow["MLFLOW_BACKEND_STORE_URI"].endswith("@postgres:5432/mlflow")
    assert head["RBLOCK_OPTUNA_STORAGE"].endswith("@postgres:5432/optuna")
    assert "RBLOCK_OPTUNA_STORAGE" not in worker, "only the driver (on the head) needs the database"
    mounts = [v for v in services["postgres"]["volumes"] if str(v).startswith("./initdb.sql:")]
    assert mounts and re.fullmatch(r"\./initdb\.sql:/docker-entrypoint-initdb\.d/[\w-]+\.sql:ro", mounts[0])
    # artifacts: the bucket minio-init creates is the one MLflow writes to, on MinIO
    bucket = re.fullmatch(r"local/(\$\{MLFLOW_BUCKET:-\w+\})", services["minio-init"]["command"][-1])
    assert bucket and mlflow["MLFLOW_ARTIFACTS_DESTINATION"].startswith(f"s3://{bucket.group(1)}/")
    assert mlflow["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    # the Ray nodes reach the MLflow server by a Host header it accepts, on the port it serves
    tracking = urlsplit(head["RBLOCK_TRACKING_URI"])
    assert tracking.hostname == "mlflow" and str(tracking.port) == mlflow["MLFLOW_PORT"]
    allowed = re.sub(r"\$\{MLFLOW_ALLOWED_HOSTS:-(.*)\}", r"\1", mlflow["MLFLOW_ALLOWED_HOSTS"]).split(",")
    assert any(fnmatch.fnmatchcase(tracking.netloc, pattern) for pattern in allowed), allowed
    # workers join the head's port
    assert worker["RAY_HEAD_ADDRESS"] == f"ray-head:{head['RAY_PORT']}"


# -------------------------------------------------------------------------------------- .env.example
def env_example_keys() -> tuple[dict[str, str], set[str]]:
    """Active KEY=VALUE lines, and every key named (active or commented out as #KEY=...)."""
    active: dict[str, str] = {}
    documented: set[str] = set()
    for raw in ENV_EXAMPLE.read_text().splitlines():
        line = raw.strip()
        commented = re.fullmatch(r"#\s*([A-Z][A-Z0-9_]*)=.*", line)
        if commented:
            documented.add(commented.group(1))
        elif line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep and re.fullmatch(r"[A-Z][A-Z0-9_]*", key), f"not KEY=VALUE: {line!r}"
            assert key not in active, f"{key} twice"
            active[key] = value
    return active, documented | active.keys()


def test_env_example_holds_no_secrets() -> None:
    active, _ = env_example_keys()
    secrets = [key for key in active if SECRET_KEY.search(key)]
    assert {"POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD"} <= set(secrets)
    for key in secrets:
        assert active[key] == "", f"{key} must be empty in the example (set it in docker/.env)"
    text = ENV_EXAMPLE.read_text()
    assert "docker/.env" in text and "openssl rand" in text


def test_env_file_is_git_ignored() -> None:
    git = shutil.which("git")
    if git and (ROOT / ".git").exists():
        ignored = subprocess.run([git, "check-ignore", "-q", "docker/.env"], cwd=ROOT, check=False)
        assert ignored.returncode == 0, "docker/.env is not git-ignored"
        example = subprocess.run([git, "check-ignore", "-q", "docker/.env.example"], cwd=ROOT, check=False)
        assert example.returncode == 1, "docker/.env.example must stay committable"
    else:
        lines = {line.strip() for line in (ROOT / ".gitignore").read_text().splitlines()}
        assert lines & {"docker/.env", "/docker/.env"}


# ---------------------------------------------------------------------------------- requirements.txt
def pinned_requirements() -> dict[str, Requirement]:
    pins: dict[str, Requirement] = {}
    for raw in REQUIREMENTS.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"not pinned with ==: {line}"
        assert not req.marker and not req.url, line
        name = canonicalize_name(req.name)
        assert name not in pins, f"{req.name} twice"
        pins[name] = req
    return pins


def pin_version(req: Requirement) -> Version:
    return Version(next(iter(req.specifier)).version)


def test_requirements_pin_every_runtime_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["cluster"]]
    pins = pinned_requirements()
    for req in wanted:
        pin = pins.get(canonicalize_name(req.name))
        assert pin is not None, f"{req.name} (pyproject) is not pinned in docker/requirements.txt"
        assert req.extras <= pin.extras, f"{pin}: lacks the extras {req.extras - pin.extras}"
        version = pin_version(pin)
        assert req.specifier.contains(version, prereleases=True), f"{pin} is outside pyproject's {req}"
    dev_only = {canonicalize_name(r.split()[0]) for r in ("pytest", "ruff", "mypy", "nbclient")}
    assert not dev_only & pins.keys(), "dev tools do not belong in the images"


def test_requirements_torch_pins_match_the_makefile() -> None:
    match = re.search(r"^TORCH_PINS\s*:?=\s*(.+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert match, "the Makefile's TORCH_PINS"
    pins = pinned_requirements()
    for word in match.group(1).split():
        req = Requirement(word)
        pin = pins.get(canonicalize_name(req.name))
        assert pin is not None and pin_version(pin) == Version(next(iter(req.specifier)).version), word


# ----------------------------------------------------------------------------------- cluster-aws.yaml
@pytest.fixture(scope="module")
def cluster() -> dict[str, Any]:
    data = yaml.safe_load(CLUSTER.read_text())
    assert isinstance(data, dict)
    return data


def test_cluster_config(cluster: dict[str, Any], services: dict[str, Any]) -> None:
    assert cluster["cluster_name"]
    assert cluster["provider"]["type"] == "aws" and cluster["provider"]["region"]
    assert cluster["auth"]["ssh_user"] == "ubuntu"
    image = cluster["docker"]["image"]
    assert image.endswith(f"/rblock-tune:{__version__}-gpu"), image
    assert services["ray-head"]["image"].endswith("-gpu"), "the image compose's Ray nodes run"
    assert cluster["docker"]["container_name"]
    types = cluster["available_node_types"]
    head = types[cluster["head_node_type"]]
    assert not head["resources"].get("GPU"), "the head holds no GPU trial"
    gpu_types = [
        t
        for name, t in types.items()
        if name != cluster["head_node_type"] and t["resources"].get("GPU", 0) >= 1
    ]
    assert gpu_types, "a GPU worker type"
    for node_type in gpu_types:
        assert node_type.get("min_workers", 0) == 0 and node_type["max_workers"] >= 1
        assert node_type["max_workers"] <= cluster["max_workers"]
    head_commands = " ".join(cluster["head_start_ray_commands"])
    assert "ray start --head" in head_commands
    assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in head_commands
    assert "--block" not in head_commands, "ray up needs `ray start` to return"
    assert "$RAY_HEAD_IP:6379" in " ".join(cluster["worker_start_ray_commands"])


def test_cluster_config_matches_rays_schema(cluster: dict[str, Any]) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    spec = find_spec("ray")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("ray is not installed")
    schema_path = Path(next(iter(spec.submodule_search_locations))) / "autoscaler" / "ray-schema.json"
    if not schema_path.exists():
        pytest.skip("this ray has no ray-schema.json")
    jsonschema.validate(cluster, json.loads(schema_path.read_text()))
    with pytest.raises(jsonschema.ValidationError):  # the check can fail
        jsonschema.validate({**cluster, "no_such_key": 1}, json.loads(schema_path.read_text()))
