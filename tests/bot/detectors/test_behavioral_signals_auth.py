"""Behavioral Signals credentials are checked once at start-up (`GET /auth`, as the SDK does)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.errors import SettingsError
from bot.resources import open_runtime
from bot.verdict import ProviderName
from testkit.e2e import e2e_settings
from testkit.media_factory import MediaFiles
from testkit.standins import BehavioralSignalsStandIn, ResembleStandIn
from tests.bot.test_cli import bs_env, run_cli

BS = [ProviderName.BEHAVIORAL_SIGNALS]


async def test_good_credentials_are_checked_once_at_start_up(
    bs_standin: BehavioralSignalsStandIn, resemble_standin: ResembleStandIn, tmp_path: Path
) -> None:
    """Fails if start-up does not ask `/auth` before any scan (the stand-in answers 200 only
    to the right key and X-Auth-Client)."""
    settings = e2e_settings(tmp_path, resemble_standin, bs_standin)
    async with open_runtime(settings, providers=BS):
        assert [(c.route, c.status) for c in bs_standin.calls] == [("auth", 200)]


@pytest.mark.parametrize(
    "override",
    [
        {"behavioralsignals_api_key": SecretStr("bs-wrong-key")},
        {"behavioralsignals_cid": "99999999"},
    ],
    ids=["wrong-key", "wrong-cid"],
)
async def test_refused_credentials_stop_start_up_naming_the_settings(
    bs_standin: BehavioralSignalsStandIn,
    resemble_standin: ResembleStandIn,
    tmp_path: Path,
    override: dict[str, object],
) -> None:
    """Fails if a refused key or cid lets the bot start (the first scan would be the first
    to find out) or the error does not name the settings."""
    settings = e2e_settings(tmp_path, resemble_standin, bs_standin, **override)
    with pytest.raises(SettingsError, match="BEHAVIORALSIGNALS_API_KEY / BEHAVIORALSIGNALS_CID"):
        async with open_runtime(settings, providers=BS):
            pytest.fail("the runtime opened with refused credentials")
    assert bs_standin.submissions == 0


async def test_an_unreachable_check_only_warns(
    bs_standin: BehavioralSignalsStandIn,
    resemble_standin: ResembleStandIn,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Fails if a check the service cannot answer stops start-up or passes silently."""
    bs_standin.fail_next("auth", 404)
    settings = e2e_settings(tmp_path, resemble_standin, bs_standin)
    with caplog.at_level(logging.WARNING, logger="bot.resources"):
        async with open_runtime(settings, providers=BS):
            pass
    assert "could not check the Behavioral Signals credentials" in caplog.text


async def test_an_accepting_answer_with_an_undocumented_body_passes(
    bs_standin: BehavioralSignalsStandIn,
    resemble_standin: ResembleStandIn,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Fails if a 200 to `/auth` whose body is not JSON (the body is undocumented) is taken
    as a failed check."""
    bs_standin.malformed("auth", body=b"OK")
    settings = e2e_settings(tmp_path, resemble_standin, bs_standin)
    with caplog.at_level(logging.INFO, logger="bot.resources"):
        async with open_runtime(settings, providers=BS):
            pass
    assert "accepted the API key and project id" in caplog.text


async def test_scan_with_a_wrong_key_stops_before_any_upload(
    bs_standin: BehavioralSignalsStandIn, media: MediaFiles, tmp_path: Path
) -> None:
    """Fails if `python -m bot scan` with a refused key uploads anything or does not say
    which setting to fix."""
    env = {**bs_env(bs_standin, tmp_path), "BEHAVIORALSIGNALS_API_KEY": "bs-wrong-key"}
    code, _, err = await run_cli("scan", str(media.speech_wav), env=env, cwd=tmp_path)
    assert code == 2
    assert "BEHAVIORALSIGNALS_API_KEY" in err
    assert "bs-wrong-key" not in err
    assert bs_standin.submissions == 0


# --- Resemble: no credential endpoint; its unbilled detect list stands in --------------------

RESEMBLE = [ProviderName.RESEMBLE]


async def test_resemble_key_is_checked_at_start_up_without_billing(
    bs_standin: BehavioralSignalsStandIn, resemble_standin: ResembleStandIn, tmp_path: Path
) -> None:
    """Fails if start-up does not ask Resemble (its detect list) or uploads anything."""
    settings = e2e_settings(tmp_path, resemble_standin, bs_standin)
    async with open_runtime(settings, providers=RESEMBLE):
        assert [(c.route, c.status) for c in resemble_standin.calls] == [("list", 200)]
    assert resemble_standin.submissions == 0


async def test_refused_resemble_key_stops_start_up_naming_it(
    bs_standin: BehavioralSignalsStandIn, resemble_standin: ResembleStandIn, tmp_path: Path
) -> None:
    """Fails if a refused Resemble key lets the bot start or the error does not name it."""
    settings = e2e_settings(
        tmp_path, resemble_standin, bs_standin, resemble_api_key=SecretStr("wrong")
    )
    with pytest.raises(SettingsError, match="RESEMBLE_API_KEY"):
        async with open_runtime(settings, providers=RESEMBLE):
            pytest.fail("the runtime opened with a refused key")
