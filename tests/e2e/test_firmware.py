"""A legacy 1.6 UpdateFirmware reaches a 2.0.1 charger through the proxy, and the charger's progress reaches
the legacy as 1.6 FirmwareStatusNotifications, over real sockets."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from ocpp.exceptions import GenericError
from ocpp.routing import after, on
from ocpp.v16 import call as call16
from ocpp.v201 import call, call_result
from ocpp.v201.enums import Action

from peers._wire import run_logged, utc_now
from peers.charger201 import Charger201
from peers.legacy_csms import LegacyCsms
from proxy.app import RunningProxy
from tests.conftest import proxy_url

LOGGER = logging.getLogger("tests.e2e.firmware")
FIRMWARE_URL = "https://firmware.example.com/sim-201/2.1.0.bin"
PROGRESS = ("Downloading", "Downloaded", "Installing", "Installed")


class FirmwareCharger(Charger201):
    """A charger that accepts (or rejects) an UpdateFirmware and then reports every step of it."""

    update_status = "Accepted"

    @on(Action.update_firmware)
    def on_update_firmware(self, **_: Any) -> call_result.UpdateFirmware:
        return call_result.UpdateFirmware(status=self.update_status)

    @after(Action.update_firmware)
    async def after_update_firmware(self, request_id: int, **_: Any) -> None:
        if self.update_status == "Accepted":
            await run_logged(self._report(request_id), LOGGER, "firmware_report_failed", station_id=self.id)

    async def _report(self, request_id: int) -> None:
        for status in PROGRESS:
            await self._call(call.FirmwareStatusNotification(status=status, request_id=request_id))


async def booted(proxy: RunningProxy, station_id: str) -> FirmwareCharger:
    charger = FirmwareCharger(station_id, proxy_url(proxy))
    await charger.connect()
    assert (await charger.boot())["status"] == "Accepted"
    return charger


async def test_update_firmware_progress_reaches_the_legacy(proxy: RunningProxy, legacy: LegacyCsms) -> None:
    charger = await booted(proxy, "CPFW01")
    retrieve_date = utc_now()
    answer = await legacy._call(
        "CPFW01",
        call16.UpdateFirmware(location=FIRMWARE_URL, retrieve_date=retrieve_date, retries=2, retry_interval=60),
    )
    assert answer == {}  # OCPP 1.6 UpdateFirmware.conf has no fields
    await legacy.wait_for(lambda: len(legacy.firmware_statuses.get("CPFW01", [])) == len(PROGRESS))
    assert legacy.firmware_statuses["CPFW01"] == list(PROGRESS)

    (update,) = [payload for action, payload in charger.received_calls if action == "UpdateFirmware"]
    assert update["firmware"] == {"location": FIRMWARE_URL, "retrieveDateTime": retrieve_date}
    assert (update["retries"], update["retryInterval"]) == (2, 60)
    sent = [frame[3] for frame in charger.frames_out if frame[0] == 2 and frame[2] == "FirmwareStatusNotification"]
    assert [notification["requestId"] for notification in sent] == [update["requestId"]] * len(PROGRESS)
    await charger.close()


async def test_update_firmware_the_charger_rejects_is_an_error_for_the_legacy(
    proxy: RunningProxy, legacy: LegacyCsms
) -> None:
    charger = await booted(proxy, "CPFW02")
    charger.update_status = "Rejected"
    with pytest.raises(GenericError, match="Rejected"):
        await legacy._call("CPFW02", call16.UpdateFirmware(location=FIRMWARE_URL, retrieve_date=utc_now()))
    assert "CPFW02" not in legacy.firmware_statuses
    await charger.close()
