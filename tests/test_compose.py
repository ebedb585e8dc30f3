"""docker-compose.yml, checked without a container engine.

The file is validated against the Compose Specification JSON schema (vendored in tests/data, see
its README), then by the semantic checks the schema cannot express. A broken copy of the file shows
that the checker does report problems.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
ONE_SHOTS = {"airflow-init", "recsys-generate"}  # run to completion: no healthcheck
AIRFLOW = {"airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"}
COMPOSE_OWN_VARS = {"COMPOSE_PROJECT_NAME", "COMPOSE_PROFILES"}  # read by compose, not interpolated
INTERPOLATION = re.compile(r"\$(?:\$|\{([A-Za-z_]\w*)|([A-Za-z_]\w*))")  # "$$" is an escaped "$"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|KEY")
URL_PASSWORD = re.compile(r"://[^:/@\s]*:(\$\{[^}]*\}|[^@\s]+)@")  # the password of user:password@
VARIABLE = re.compile(r"\$\$?\{?([A-Za-z_]\w*)")  # a shell's $X, ${X} (as "$$" in compose) or compose's ${X}
# A here-document's body reaches the process on stdin, not as an argument.
HERE_DOCUMENT = re.compile(r"<<-?\s*['\"]?(\w+)['\"]?[^\n]*\n.*?^\s*\1\s*$", re.DOTALL | re.MULTILINE)


def load_compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def strings(node):
    """Every string in a loaded YAML tree, keys included."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from strings(key)
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)


def interpolated(node) -> set[str]:
    return {a or b for text in strings(node) for a, b in INTERPOLATION.findall(text) if a or b}


def env_example() -> dict[str, str]:
    lines = (ROOT / ".env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    pairs = env.items() if isinstance(env, dict) else (item.split("=", 1) for item in env)
    return {key: str(value) for key, value in pairs}


def mounts(service: dict) -> list[tuple[str, str]]:
    """(source, target) of each volume, short ("src:dst[:mode]") or long syntax."""
    found = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            found.append((volume.get("source", ""), volume["target"]))
        else:
            source, target = volume.split(":")[:2]
            found.append((source, target))
    return found


def is_bind(source: str) -> bool:
    return source.startswith((".", "/", "~"))


def secret_variables(service: dict) -> set[str]:
    """The names that hold a secret in a service: named like one, or set from one."""
    env = environment(service)
    return {key for key, value in env.items() if SECRET_NAME.search(key) or any(
        SECRET_NAME.search(name) for name in interpolated(value))}  # fmt: skip


def secrets_on_command_lines(service: dict) -> set[str]:
    """Secret variables a service's command expands into some process's arguments, which `ps` shows."""
    secret = secret_variables(service)
    run = [service.get("command"), service.get("entrypoint"), (service.get("healthcheck") or {}).get("test")]
    texts = [HERE_DOCUMENT.sub("", text) for text in strings(run)]
    return {name for text in texts for name in VARIABLE.findall(text) if name in secret or SECRET_NAME.search(name)}


def dockerfile() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    return [" ".join(line.split()) for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def schema_errors(compose: dict) -> list[str]:
    schema = json.loads((ROOT / "tests" / "data" / "compose-spec.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    return [f"/{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose)]


def semantic_problems(compose: dict) -> list[str]:
    services, found = compose["services"], []
    for name, service in services.items():
        depends = service.get("depends_on", {})
        for dep, spec in (dict.fromkeys(depends, {}) if isinstance(depends, list) else depends).items():
            if dep not in services:
                found.append(f"{name}: depends_on names undefined service {dep!r}")
            elif spec.get("condition") == "service_healthy" and "healthcheck" not in services[dep]:
                found.append(f"{name}: waits for {dep!r} to be healthy, but it has no healthcheck")
        if name not in ONE_SHOTS and "healthcheck" not in service:
            found.append(f"{name}: long-running service without a healthcheck")
        for key, value in environment(service).items():
            if SECRET_NAME.search(key) and not key.endswith("_FILE") and "${" not in value:
                found.append(f"{name}: {key} is written literally, not taken from .env")
        leaks = [text for text in strings(service) for pw in URL_PASSWORD.findall(text) if not pw.startswith("${")]
        found += [f"{name}: literal password in a URL: {text}" for text in leaks]
        found += [f"{name}: secret {secret} on a command line" for secret in sorted(secrets_on_command_lines(service))]
        for source, _ in mounts(service):
            if is_bind(source) and not (ROOT / source).exists():
                found.append(f"{name}: bind-mount source {source} does not exist")
            elif not is_bind(source) and source not in (compose.get("volumes") or {}):
                found.append(f"{name}: named volume {source!r} is not declared")
        build = service.get("build")
        context = build if isinstance(build, str) else (build or {}).get("context")
        if context and not (ROOT / context).is_dir():
            found.append(f"{name}: build context {context} does not exist")
    return found


def test_compose_file_matches_the_compose_specification_schema():
    assert schema_errors(load_compose()) == []


def test_compose_file_passes_the_semantic_checks():
    assert semantic_problems(load_compose()) == []


BREAKAGES = [
    pytest.param(
        lambda s: s["recsys-api"].update(healthchek=s["recsys-api"].pop("healthcheck")), "healthchek", id="typo"
    ),
    pytest.param(lambda s: s["airflow-scheduler"]["depends_on"].update(postgress={}), "postgress", id="dangling-dep"),
    pytest.param(lambda s: s["redis"].pop("healthcheck"), "'redis' to be healthy", id="healthy-without-check"),
    pytest.param(
        lambda s: s["postgres"]["environment"].update(POSTGRES_PASSWORD="x"), "POSTGRES_PASSWORD", id="secret"
    ),
    pytest.param(
        lambda s: s["recsys-api"]["environment"].update(RECSYS_SOURCE_URL="postgresql://u:pw@db/x"),
        "u:pw@",
        id="password-in-url",
    ),
    pytest.param(
        lambda s: s["redis"].update(command=["sh", "-c", 'exec redis-server --requirepass "$${REDISCLI_AUTH}"']),
        "secret REDISCLI_AUTH on a command line",
        id="secret-argument",
    ),
    pytest.param(
        lambda s: s["redis"].update(command=["redis-server", "--requirepass", "${REDIS_PASSWORD}"]),
        "secret REDIS_PASSWORD on a command line",
        id="interpolated-secret-argument",
    ),
    pytest.param(lambda s: s["postgres"]["volumes"].append("./no-such-dir:/x"), "no-such-dir", id="bind-mount"),
]


@pytest.mark.parametrize(("breakage", "expected"), BREAKAGES)
def test_the_checker_reports_a_broken_file(breakage, expected):
    broken = copy.deepcopy(load_compose())
    breakage(broken["services"])
    problems = schema_errors(broken) + semantic_problems(broken)
    assert any(expected in problem for problem in problems), problems


def test_every_interpolated_variable_is_documented_in_env_example():
    documented, used = env_example(), interpolated(load_compose())
    assert sorted(used - documented.keys()) == []
    assert sorted(documented.keys() - used - COMPOSE_OWN_VARS) == []
    lines = (ROOT / ".env.example").read_text().splitlines()
    for before, line in zip(lines, lines[1:], strict=False):
        if line and not line.startswith("#"):
            assert before.startswith("# "), f"{line.split('=')[0]} has no comment line above it"


def test_airflow_services_wait_for_the_database_and_the_init():
    services = load_compose()["services"]
    for name in AIRFLOW | {"airflow-worker"}:
        depends = services[name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy", name
        env = environment(services[name])
        assert env["AIRFLOW__CORE__EXECUTOR"] == "${AIRFLOW__CORE__EXECUTOR:-LocalExecutor}", name
        assert env["RECSYS_API_URL"] == "http://recsys-api:8000", name
        if name != "airflow-init":
            assert depends["airflow-init"]["condition"] == "service_completed_successfully", name
    assert "/api/v2/monitor/health" in " ".join(services["airflow-apiserver"]["healthcheck"]["test"])
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])


def test_celery_profile_adds_redis_and_scalable_workers():
    services = load_compose()["services"]
    for name in ("redis", "airflow-worker"):
        assert services[name]["profiles"] == ["celery"]
    worker = services["airflow-worker"]
    assert not {"container_name", "hostname", "ports"} & worker.keys()
    assert worker["command"] == ["airflow", "celery", "worker"]
    env = environment(worker)
    assert re.fullmatch(r"redis://:\$\{REDIS_PASSWORD[^}]*\}@redis:6379/0", env["AIRFLOW__CELERY__BROKER_URL"])
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql")
    assert not any("profiles" in services[name] for name in AIRFLOW | {"postgres", "recsys-api"})


def test_every_recsys_container_mounts_one_artifacts_volume_at_the_data_dir():
    compose = load_compose()
    image = compose["x-recsys-image"]["image"]
    runs_recsys = {name: s for name, s in compose["services"].items() if s.get("image") == image}
    assert AIRFLOW | {"airflow-worker", "recsys-api"} <= runs_recsys.keys()
    volumes = set()
    for name, service in runs_recsys.items():
        data_dir = environment(service)["RECSYS_DATA_DIR"]
        named = {source for source, target in mounts(service) if target == data_dir and not is_bind(source)}
        assert named, f"{name} mounts no named volume at RECSYS_DATA_DIR={data_dir}"
        volumes |= named
    assert len(volumes) == 1, volumes


def test_postgres_holds_separate_recsys_and_airflow_databases():
    compose = load_compose()
    postgres = compose["services"]["postgres"]
    assert ("./docker/postgres", "/docker-entrypoint-initdb.d") in mounts(postgres)
    script = "\n".join(p.read_text() for p in sorted((ROOT / "docker" / "postgres").glob("*.sh")))
    assert "CREATE DATABASE recsys" in script and "CREATE DATABASE airflow" in script
    env = environment(compose["x-airflow-common"])
    assert env["RECSYS_SOURCE_URL"].startswith("postgresql://") and env["RECSYS_SOURCE_URL"].endswith("/recsys")
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("@postgres:5432/airflow")


def test_dockerfile_installs_cpu_torch_before_the_requirements_and_runs_as_non_root():
    lines = dockerfile()
    pinned = next(line for line in (ROOT / "requirements.txt").read_text().splitlines() if line.startswith("torch=="))
    torch = next(i for i, line in enumerate(lines) if f"pip install {pinned} " in line)
    assert "--index-url https://download.pytorch.org/whl/cpu" in lines[torch]
    assert torch < next(i for i, line in enumerate(lines) if "pip install -r /opt/recsys/requirements.txt" in line)
    assert any("pip install --no-deps ." in line for line in lines)
    assert any(line.startswith("ENV ") and "HF_HUB_OFFLINE=1" in line.split() for line in lines)
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert not [line for line in lines if line.startswith(("ENV ", "ARG ")) and SECRET_NAME.search(line)]
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert {".env", ".venv", "data", ".git"} <= set(ignored)
