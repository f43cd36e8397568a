"""GUANAI_VIEWS_BATCH_MS: how often the projector starts a batch while commands keep coming
(projections/runner.py ``batch_interval``), from the setting to the runner."""

from __future__ import annotations

import pytest

from guanai import bootstrap
from infrastructure.settings import SettingsError, load_settings


def test_the_setting_reaches_the_projectors_runner_in_seconds() -> None:
    assert load_settings({}).views_batch_ms == 50
    settings = load_settings({"GUANAI_VIEWS_BATCH_MS": "20"})
    projector = bootstrap.projector(settings, "postgresql://unused/none")
    assert projector._runner_options["batch_interval"] == 0.02
    assert (
        bootstrap.projector(load_settings({"GUANAI_VIEWS_BATCH_MS": "0"}), "postgresql://unused/none")._runner_options[
            "batch_interval"
        ]
        == 0
    )


@pytest.mark.parametrize("value", ["-1", "1001", "fast"])
def test_a_value_out_of_range_is_refused_naming_the_variable(value: str) -> None:
    with pytest.raises(SettingsError, match="GUANAI_VIEWS_BATCH_MS"):
        load_settings({"GUANAI_VIEWS_BATCH_MS": value})
