"""compose.yaml is the production topology; Docker does not run here, so this test holds the
file to the code: commands exist in the CLI and parse, variables are real settings, every
process kind has a service, and the servers have health checks and volumes."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from guanai.cli.main import COMMANDS, NO_PERSONAL_DATA, parser
from infrastructure.embedded import nats_server_binary
from infrastructure.settings import env_names, load_settings, nats_servers

ROOT = Path(__file__).resolve().parents[2]
# Process kinds that run as long-lived services in production (one compose service each).
PROCESS_KINDS = {"api", "projector", "relay", "router", "escalator", "scheduler"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def guanai_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in compose["services"].items() if s.get("command", [None])[0] == "guanai"}


def test_every_guanai_command_exists_and_parses(compose: dict[str, Any]) -> None:
    services = guanai_services(compose)
    assert services, "compose.yaml runs no guanai process"
    for name, service in services.items():
        command = service["command"]
        assert command[1] in COMMANDS, f"{name}: unknown command {command[1]}"
        args = parser().parse_args(command[1:])  # argparse exits (fails the test) on bad flags
        assert args.command == command[1]
        assert service.get("build") == "." and (ROOT / "Dockerfile").exists()


def test_every_process_kind_has_a_service(compose: dict[str, Any]) -> None:
    kinds = {s["command"][1] for s in guanai_services(compose).values()}
    assert PROCESS_KINDS <= kinds, f"missing services for {PROCESS_KINDS - kinds}"
    assert PROCESS_KINDS <= set(COMMANDS)


def test_environment_names_real_settings_and_points_at_the_servers(compose: dict[str, Any]) -> None:
    known = set(env_names().values())
    for name, service in guanai_services(compose).items():
        env = service["environment"]
        unknown = {k for k in env if k.startswith("GUANAI_")} - known
        assert not unknown, f"{name}: {unknown} are not settings (infrastructure/settings.py)"
        assert (
            env["GUANAI_DATABASE_URL"].startswith("postgresql://") and "@postgres:5432/" in env["GUANAI_DATABASE_URL"]
        )
        assert nats_servers(env["GUANAI_NATS_URL"]) == [f"nats://nats-{i}:4222" for i in (1, 2, 3)]
        assert env["GUANAI_STREAM_REPLICAS"] == "3", f"{name}: the stream is kept on all three nodes"
        assert "GUANAI_JWT_SECRET" in env, f"{name}: every process must share the token signing key"
        # Separate containers have separate data directories: a generated key would differ in each.
        assert "GUANAI_CHAIN_KEY" in env, f"{name}: the chain key every writer must share"
        # The master key goes where personal data is opened, and nowhere else (least privilege).
        opens = service["command"][1] not in NO_PERSONAL_DATA
        assert ("GUANAI_MASTER_KEY" in env) == opens, f"{name}: master key {'missing' if opens else 'not needed'}"
        # A rotation without a stop gives every one of them the key the store was under.
        assert ("GUANAI_PREVIOUS_MASTER_KEYS" in env) == opens, f"{name}: previous master keys"
        # Sign-in finds accounts by a keyed hash: every API process needs the same lookup key.
        if service["command"][1] == "api":
            assert "GUANAI_LOOKUP_KEY" in env, f"{name}: the lookup key of accounts' phone numbers"
        # The values must be acceptable to the settings loader (placeholders aside).
        concrete = {k: str(v) for k, v in env.items() if "${" not in str(v)}
        load_settings(concrete)


def test_api_port_and_health(compose: dict[str, Any]) -> None:
    api = next(s for s in guanai_services(compose).values() if s["command"][1] == "api")
    port = int(api["command"][api["command"].index("--port") + 1])
    assert f"{port}:{port}" in api["ports"]
    assert "/health" in " ".join(api["healthcheck"]["test"])
    assert api["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_servers_have_jetstream_volumes_and_health_checks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("postgres", "nats-1", "nats-2", "nats-3"):
        assert services[name].get("healthcheck"), f"{name} has no health check"
        assert services[name].get("volumes"), f"{name} keeps no data"
    for name, service in guanai_services(compose).items():
        if service["command"][1] in PROCESS_KINDS:
            assert service.get("healthcheck"), f"{name} has no health check"


def test_nats_is_a_three_node_jetstream_cluster_that_syncs_every_write(compose: dict[str, Any], tmp_path: Path) -> None:
    nodes = {n: s for n, s in compose["services"].items() if n.startswith("nats")}
    assert sorted(nodes) == ["nats-1", "nats-2", "nats-3"]
    names = {s["command"][s["command"].index("--server_name") + 1] for s in nodes.values()}
    assert names == set(nodes), "each node names itself"
    assert len({s["volumes"][0].split(":")[0] for s in nodes.values()}) == 3, "each node keeps its own store"
    [config] = {c["source"] for s in nodes.values() for c in s["configs"]}
    text = compose["configs"][config]["content"]
    assert "sync_interval: always" in text
    for node in nodes:
        assert f"nats-route://{node}:6222" in text, f"{node} is a route of the cluster"
    # The real nats-server accepts the file (-t: check the configuration and exit).
    path = tmp_path / "nats.conf"
    path.write_text(text.replace("/data", str(tmp_path / "js")))
    checked = subprocess.run(
        [str(nats_server_binary()), "-c", str(path), "-t"], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stderr + checked.stdout
    for name, service in guanai_services(compose).items():
        needs = set(service.get("depends_on", {}))
        assert not needs & {"nats"}, f"{name} depends on a NATS service that no longer exists"
        if needs & set(nodes):
            assert needs >= set(nodes), f"{name} waits for the whole cluster (the stream has three replicas)"
    assert load_settings({"GUANAI_STREAM_REPLICAS": "3"}).stream_replicas == 3
