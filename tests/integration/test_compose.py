"""``compose.yaml``, ``Dockerfile`` and ``deploy/nats/nats.conf`` against the real tools.

Containers cannot run here, so this checks the deployment's shape and that
everything it asks of our programs is accepted by them: every
``milepost-server`` command line in the compose file parses with the real CLI
(cyclopts' own parser, and each flag is listed by ``--help`` of the real
executable), the NATS node configuration is accepted by the real nats-server
(``nats-server -t``) with an authorization file written by ``milepost-server
nats-config``, and the Dockerfile installs the package the README way.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from server.cli import app as server_app
from server.nats_embedded import nats_server_binary

ROOT = Path(__file__).resolve().parents[2]
NATS_NODES = ("nats-1", "nats-2", "nats-3")
SERVERS = ("milepost-1", "milepost-2")
CLUSTER_PORT = 6222

_VARIABLE = re.compile(r"\$\{(?P<name>[A-Z_][A-Z0-9_]*)(?:(?::?[-?])(?P<rest>[^}]*))?\}")
TEST_VALUES = {"POSTGRES_PASSWORD": "pg-secret", "MILEPOST_NATS_PASSWORD": "nats-secret"}


def interpolate(value: Any) -> Any:
    """Replace compose's ``${NAME}``, ``${NAME:?message}``, ``${NAME:-default}`` everywhere."""
    if isinstance(value, str):
        return _VARIABLE.sub(lambda m: TEST_VALUES[m.group("name")], value)
    if isinstance(value, list):
        return [interpolate(item) for item in value]
    if isinstance(value, dict):
        return {key: interpolate(item) for key, item in value.items()}
    return value


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The parsed compose file (YAML anchors and merge keys resolved, variables filled)."""
    loaded = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert isinstance(loaded, dict)
    return dict(interpolate(loaded))


def service(compose: dict[str, Any], name: str) -> dict[str, Any]:
    services: dict[str, Any] = compose["services"]
    assert name in services, f"compose.yaml has no service {name!r}"
    found: dict[str, Any] = services[name]
    return found


def flag_value(command: list[str], flag: str) -> str:
    assert flag in command, f"{flag} missing from {command}"
    return command[command.index(flag) + 1]


def test_every_variable_is_required_or_defaulted() -> None:
    names = {m.group("name") for m in _VARIABLE.finditer((ROOT / "compose.yaml").read_text())}
    assert names == set(TEST_VALUES)
    guide = (ROOT / "docs" / "operations.md").read_text()
    for name in names:
        assert name in guide, f"docs/operations.md does not explain ${name}"


def test_three_nats_nodes_with_jetstream_routed_to_each_other(compose: dict[str, Any]) -> None:
    conf_text = (ROOT / "deploy" / "nats" / "nats.conf").read_text()
    routes = set(re.findall(r"nats-route://([\w-]+):(\d+)", conf_text))
    assert routes == {(node, str(CLUSTER_PORT)) for node in NATS_NODES}
    assert re.search(r"^jetstream\s*\{[^}]*store_dir", conf_text, re.M)
    assert re.search(rf"^cluster\s*\{{[^}}]*port:\s*{CLUSTER_PORT}", conf_text, re.M)
    assert "server_name: $NATS_SERVER_NAME" in conf_text
    assert 'include "auth/auth.conf"' in conf_text

    host_ports: set[str] = set()
    for name in NATS_NODES:
        node = service(compose, name)
        assert node["image"].startswith("nats:")
        assert node["command"] == ["--config", "/etc/nats/nats.conf"]
        assert node["environment"]["NATS_SERVER_NAME"] == name
        assert node.get("hostname", name) == name
        volumes = node["volumes"]
        assert "./deploy/nats/nats.conf:/etc/nats/nats.conf:ro" in volumes
        assert "nats-auth:/etc/nats/auth:ro" in volumes  # the generated authorization
        assert f"{name}-jetstream:/data/jetstream" in volumes  # its own JetStream store
        assert "healthz" in " ".join(node["healthcheck"]["test"])
        assert node["depends_on"]["nats-config"]["condition"] == "service_completed_successfully"
        ports = [str(p) for p in node["ports"]]
        assert any(p.endswith(":4222") for p in ports)
        assert not any(p.endswith(f":{CLUSTER_PORT}") for p in ports), "routes stay private"
        host_ports.update(p.rsplit(":", 1)[0] for p in ports)
    assert len(host_ports) == 2 * len(NATS_NODES), "each node publishes its own host ports"


def test_the_nats_config_is_accepted_by_nats_server(tmp_path: Path) -> None:
    """The node configuration parses with the real binary, for each node name, with the
    authorization file that ``milepost-server nats-config`` writes."""
    folder = tmp_path / "etc-nats"
    (folder / "auth").mkdir(parents=True)
    shutil.copy(ROOT / "deploy" / "nats" / "nats.conf", folder / "nats.conf")
    database = tmp_path / "milepost.sqlite"
    env = {**os.environ, "MILEPOST_NATS_PASSWORD": "s3cret", "MILEPOST_SERVER_HOME": str(tmp_path)}
    server = [sys.executable, "-m", "server.cli"]
    added = subprocess.run(
        [*server, "person", "add", "alice", "--database", str(database)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert added.returncode == 0, added.stderr
    written = subprocess.run(
        [*server, "nats-config", "--database", str(database), "--out", f"{folder}/auth/auth.conf"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert written.returncode == 0, written.stderr
    auth = (folder / "auth" / "auth.conf").read_text()
    assert '"user": "milepost-server"' in auth and '"user": "alice"' in auth
    assert "milepost.events.alice.>" in auth
    for name in NATS_NODES:
        checked = subprocess.run(
            [str(nats_server_binary()), "-t", "-c", str(folder / "nats.conf")],
            env={**os.environ, "NATS_SERVER_NAME": name},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert checked.returncode == 0, checked.stderr + checked.stdout
    assert (ROOT / "deploy" / "nats" / "auth" / ".gitignore").exists()


def test_nats_config_refuses_to_run_without_the_service_password(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MILEPOST_NATS_PASSWORD"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "server.cli",
            "nats-config",
            "--database",
            str(tmp_path / "m.sqlite"),
            "--out",
            str(tmp_path / "auth.conf"),
        ],
        env={**env, "MILEPOST_SERVER_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "MILEPOST_NATS_PASSWORD" in done.stderr
    assert not (tmp_path / "auth.conf").exists()


def test_postgres_has_a_volume_and_a_healthcheck(compose: dict[str, Any]) -> None:
    postgres = service(compose, "postgres")
    assert postgres["image"].startswith("postgres:")
    assert "postgres-data:/var/lib/postgresql/data" in postgres["volumes"]
    test = postgres["healthcheck"]["test"]
    assert "pg_isready" in test
    env = postgres["environment"]
    assert env["POSTGRES_USER"] == "milepost" and env["POSTGRES_DB"] == "milepost"
    assert env["POSTGRES_PASSWORD"] == TEST_VALUES["POSTGRES_PASSWORD"]
    assert "ports" not in postgres, "PostgreSQL stays on the compose network"


def test_two_server_replicas_on_postgres_and_the_cluster(compose: dict[str, Any]) -> None:
    published = []
    for name in SERVERS:
        server = service(compose, name)
        assert server["build"] == "."
        depends = server["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy"
        for node in NATS_NODES:
            assert depends[node]["condition"] == "service_healthy"
        command = server["command"]
        assert command[:2] == ["milepost-server", "run"]
        # No secret on the command line: `run` reads them from the environment.
        assert "--database" not in command and "--nats" not in command
        assert not any(secret in " ".join(command) for secret in TEST_VALUES.values())
        environment = server["environment"]
        assert environment["MILEPOST_DATABASE"] == (
            f"postgresql://milepost:{TEST_VALUES['POSTGRES_PASSWORD']}@postgres:5432/milepost"
        )
        urls = environment["MILEPOST_NATS"].split(",")
        assert urls == [f"nats://{n}:4222" for n in NATS_NODES]
        assert environment["MILEPOST_NATS_PASSWORD"] == TEST_VALUES["MILEPOST_NATS_PASSWORD"]
        assert flag_value(command, "--stream-replicas") == "3"
        assert flag_value(command, "--host") == "0.0.0.0"
        published += [str(p) for p in server["ports"]]
    assert len(set(published)) == len(SERVERS), "each replica has its own host port"
    config = service(compose, "nats-config")
    assert flag_value(config["command"], "--out").startswith("/var/lib/milepost/nats-auth/")
    assert "nats-auth:/var/lib/milepost/nats-auth" in config["volumes"]
    assert config["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_every_named_volume_is_declared_and_every_bind_mount_exists(
    compose: dict[str, Any],
) -> None:
    declared = set(compose["volumes"])
    used: set[str] = set()
    for name, spec in compose["services"].items():
        for volume in spec.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                used.add(source)
    assert used == declared, f"used {used}, declared {declared}"
    assert {"postgres-data", "nats-auth"} | {f"{n}-jetstream" for n in NATS_NODES} <= declared


def milepost_server_commands(compose: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """(service, argv after ``milepost-server``) for every service that runs it."""
    found = []
    for name, spec in compose["services"].items():
        command = spec.get("command")
        if isinstance(command, list) and command and command[0] == "milepost-server":
            found.append((name, command[1:]))
    return found


def test_every_server_command_parses_with_the_real_cli(compose: dict[str, Any]) -> None:
    commands = milepost_server_commands(compose)
    assert {name for name, _ in commands} == {*SERVERS, "nats-config"}
    for name, argv in commands:
        # cyclopts' own parser, as `milepost-server` would run it, without running it.
        function, bound, ignored = server_app.parse_args(
            argv, exit_on_error=False, print_error=False
        )
        assert not ignored, name
        assert function.__name__ in {"run", "nats_config"}, (name, function)
        assert bound.arguments, name


def test_every_server_flag_is_listed_by_the_real_executable(compose: dict[str, Any]) -> None:
    executable = Path(sys.executable).parent / "milepost-server"
    program = [str(executable)] if executable.exists() else [sys.executable, "-m", "server.cli"]
    for name, argv in milepost_server_commands(compose):
        subcommand = [token for token in argv if not token.startswith("-")][:1]
        flags = {token for token in argv if token.startswith("--")}
        shown = subprocess.run(
            [*program, *subcommand, "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "COLUMNS": "200"},
        )
        assert shown.returncode == 0, shown.stderr
        for flag in flags:
            assert re.search(rf"{re.escape(flag)}\b", shown.stdout), f"{name}: {flag} unknown"


def test_the_dockerfile_installs_the_package_the_readme_way() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    readme = (ROOT / "README.md").read_text()
    assert re.search(r"pip install (-q )?-e \.", readme), "the README installs with pip from ."
    instructions = [line.strip() for line in dockerfile.splitlines() if line.strip()]
    assert instructions[0].startswith("#") or instructions[0].startswith("FROM")
    base = next(line for line in instructions if line.startswith("FROM "))
    assert re.match(r"FROM python:3\.1[1-9]", base)
    assert re.search(r"^RUN pip install (--no-cache-dir )?\.(\s|$)", dockerfile, re.M)
    # Everything `pip install .` needs is copied in before it runs.
    pyproject = (ROOT / "pyproject.toml").read_text()
    packages = re.search(r"include = \[([^\]]*)\]", pyproject)
    assert packages is not None
    copied = " ".join(line for line in instructions if line.startswith("COPY "))
    for package in re.findall(r'"(\w+)\*"', packages.group(1)):
        assert f"COPY {package} " in copied, f"the Dockerfile does not copy {package}/"
    assert "pyproject.toml" in copied and "README.md" in copied
    cmd = next(line for line in reversed(instructions) if line.startswith("CMD "))
    assert '"milepost-server", "run"' in cmd
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and "deploy/nats/auth" in ignored
