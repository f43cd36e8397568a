"""The composition root builds every process kind from the settings: each setting reaches every
kind that uses it (``guanai/bootstrap.py``'s ``USED_BY``), and the keys are handed in from the
settings, never read from the environment by the store."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from application.care import CareApplication
from guanai import bootstrap
from guanai.bootstrap import USED_BY, Process
from infrastructure.chain import ChainKey
from infrastructure.personal_data import MasterKey
from infrastructure.settings import Settings
from infrastructure.suites import INTERNATIONAL, SigningKey

MASTER = "bootstrap-test-master-key-" + "m" * 32
PREVIOUS = "bootstrap-test-previous-key-" + "p" * 32
CHAIN = "bootstrap-test-chain-key-" + "c" * 32
SIGNING = "international:" + "11" * 32
ERASURE_LOG = "/tmp/bootstrap-test-erasures.jsonl"  # never written: no test here erases

# Every setting the bootstrap builds into an application, a value other than its default, and
# how to read it back off the application a process kind gets.
CHANGED: dict[str, tuple[Any, Callable[[CareApplication], Any]]] = {
    "command_retries": (9, lambda app: app.retries),
    "helper_capacity": (4, lambda app: app.helper_capacity),
    "db_pool_size": (
        7,
        lambda app: int(app.env["POSTGRES_POOL_SIZE"]) + int(app.env["POSTGRES_MAX_OVERFLOW"]),
    ),
    "audit_chain": (False, lambda app: app.recorder.enabled),  # type: ignore[attr-defined]
    "chain_key": (CHAIN, lambda app: app.store.keys.chain_key().fingerprint),  # type: ignore[attr-defined]
    "master_key": (MASTER, lambda app: app.store.key_store.master.key_id),  # type: ignore[attr-defined]
    "previous_master_keys": (
        PREVIOUS,
        lambda app: [k.key_id for k in app.store.key_store.master.previous],  # type: ignore[attr-defined]
    ),
    "key_cache_seconds": (0.25, lambda app: app.store.key_store.refresh_seconds),  # type: ignore[attr-defined]
    "signing_key": (SIGNING, lambda app: app.store.keys.signing_key(INTERNATIONAL).key_id),  # type: ignore[attr-defined]
    "erasure_log": (ERASURE_LOG, lambda app: app.store.keys.erasure_log),  # type: ignore[attr-defined]
}
EXPECTED = {
    "command_retries": 9,
    "helper_capacity": 4,
    "db_pool_size": 7,
    "audit_chain": False,
    "chain_key": ChainKey(CHAIN).fingerprint,
    "master_key": MasterKey(MASTER).key_id,
    "previous_master_keys": [MasterKey(PREVIOUS).key_id],
    "key_cache_seconds": 0.25,
    "signing_key": SigningKey("international", bytes.fromhex("11" * 32)).key_id,
    "erasure_log": Path(ERASURE_LOG),
}


@pytest.fixture(scope="module")
def apps(database_url: str) -> Iterator[dict[Process, CareApplication]]:
    settings = Settings(**{name: value for name, (value, _) in CHANGED.items()})
    built = {kind: bootstrap.care_application(settings, kind, database_url) for kind in Process}
    try:
        yield built
    finally:
        for app in built.values():
            app.close()


def test_every_setting_says_which_process_kinds_it_reaches() -> None:
    assert set(USED_BY) == set(Settings.__struct_fields__)
    assert all(USED_BY.values()), [name for name, kinds in USED_BY.items() if not kinds]


@pytest.mark.parametrize(
    ("setting", "kind"), [(s, k) for s in CHANGED for k in sorted(USED_BY[s])], ids=lambda v: str(v)
)
def test_a_setting_reaches_every_process_kind_that_uses_it(
    apps: dict[Process, CareApplication], setting: str, kind: Process
) -> None:
    _, read = CHANGED[setting]
    assert read(apps[kind]) == EXPECTED[setting], f"{setting} does not reach the {kind} process"


def test_the_defaults_differ_from_the_changed_values() -> None:
    """Else the walk above would pass with settings that reach nothing."""
    defaults = Settings()
    for name, (value, _) in CHANGED.items():
        assert getattr(defaults, name) != value, name


def test_processes_that_hold_no_personal_data_get_no_master_key(apps: dict[Process, CareApplication]) -> None:
    readers = {kind for kind, app in apps.items() if app.store.opens}  # type: ignore[attr-defined]
    assert readers == set(USED_BY["master_key"]) == bootstrap.OPENS_PERSONAL_DATA
    assert {Process.PROJECTOR, Process.RELAY}.isdisjoint(readers)


def test_the_scheduler_interval_reaches_the_scheduler() -> None:
    settings = Settings(scheduler_interval_seconds=42.0)
    assert {k for k in Process if bootstrap.process_config(settings, k).scheduler_interval == 42.0} >= set(
        USED_BY["scheduler_interval_seconds"]
    )


def test_the_views_batch_interval_reaches_the_projector(database_url: str) -> None:
    projector = bootstrap.projector(Settings(views_batch_ms=20), database_url)
    assert projector._runner_options["batch_interval"] == 0.02
    assert bootstrap.projector(Settings(), database_url)._runner_options["batch_interval"] == 0.05


def test_the_api_gets_the_settings_and_builds_its_application_as_the_api_kind(database_url: str) -> None:
    settings = Settings(command_retries=9, master_key=MASTER, chain_key=CHAIN)
    app = bootstrap.api(settings, database_url=database_url, nats_url=None, jwt_secret="s" * 32)
    assert app.state.settings is settings  # the API's own settings (USED_BY ... API) are read off it
    care = app.state.make_care()
    try:
        assert care.retries == 9 and care.store.opens  # type: ignore[attr-defined]
    finally:
        care.close()


def test_without_configured_keys_they_are_made_once_in_the_data_directory(database_url: str, tmp_path: Path) -> None:
    settings = Settings(data_dir=str(tmp_path))
    first = bootstrap.care_application(settings, Process.CLI, database_url, pool_size=2)
    second = bootstrap.care_application(settings, Process.ROUTER, database_url, pool_size=2)
    try:
        assert first.store.keys.chain_key().fingerprint == second.store.keys.chain_key().fingerprint  # type: ignore[attr-defined]
        assert (tmp_path / "chain-key").exists()
        assert first.store.keys.master_key(INTERNATIONAL).key_id == second.store.keys.master_key(INTERNATIONAL).key_id  # type: ignore[attr-defined]
        assert (tmp_path / "master-key").exists()
    finally:
        first.close()
        second.close()
