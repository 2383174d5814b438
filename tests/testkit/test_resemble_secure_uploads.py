"""The Resemble stand-in's Secure Uploads route, which the official SDK uses (bench/sdk_compare)."""

from __future__ import annotations

import aiohttp

from testkit.standins import ResembleStandIn
from testkit.standins import resemble as resemble_module

AUTH = {"Authorization": f"Token token={resemble_module.API_KEY}"}


async def _secure_upload(session: aiohttp.ClientSession, standin: ResembleStandIn, data: bytes):
    form = aiohttp.FormData()
    form.add_field("file", data, filename="voice.wav")
    async with session.post(f"{standin.url}/secure_uploads", data=form, headers=AUTH) as r:
        return r.status, await r.json()


async def test_a_media_token_detect_completes_like_a_direct_upload(
    resemble_standin: ResembleStandIn, http_session: aiohttp.ClientSession, make_wav_upload
) -> None:
    """Fails if a secure-uploaded file cannot be detected by its media_token (the SDK's path)."""
    upload = make_wav_upload()
    status, body = await _secure_upload(http_session, resemble_standin, upload.path.read_bytes())
    assert status == 200
    assert body["success"] is True
    headers = {**AUTH, "Prefer": "wait"}
    async with http_session.post(
        f"{resemble_standin.url}/detect",
        json={"media_token": body["token"], "frame_length": 2},
        headers=headers,
    ) as response:
        assert response.status == 200
        item = (await response.json())["item"]
    assert item["status"] == "completed"
    assert resemble_standin.last_fields == {"frame_length": "2"}


async def test_an_unknown_token_or_a_url_is_refused(
    resemble_standin: ResembleStandIn, http_session: aiohttp.ClientSession
) -> None:
    """Fails if a JSON detect without a valid media_token is accepted."""
    for body in ({"media_token": "nope"}, {"url": "https://example.com/a.wav"}, {}):
        async with http_session.post(
            f"{resemble_standin.url}/detect", json=body, headers=AUTH
        ) as response:
            assert response.status == 400
            assert (await response.json())["success"] is False
    assert resemble_standin.jobs == {}
