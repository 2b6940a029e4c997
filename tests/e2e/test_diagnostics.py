"""A legacy 1.6 GetDiagnostics reaches a 2.0.1 charger as GetLog through the proxy, and the charger's upload
progress reaches the legacy as 1.6 DiagnosticsStatusNotifications, over real sockets."""

from __future__ import annotations

import logging
from typing import Any

from ocpp.routing import after, on
from ocpp.v16 import call as call16
from ocpp.v201 import call, call_result
from ocpp.v201.enums import Action

from peers._wire import run_logged
from peers.charger201 import Charger201
from peers.legacy_csms import LegacyCsms
from proxy.app import RunningProxy
from tests.conftest import proxy_url

LOGGER = logging.getLogger("tests.e2e.diagnostics")
UPLOAD_URL = "ftp://diagnostics.example.com/upload/"
LOG_FILE = "CPDG01-diagnostics.zip"


class LogCharger(Charger201):
    """A charger that accepts a GetLog, names its file, and reports the upload."""

    @on(Action.get_log)
    def on_get_log(self, **_: Any) -> call_result.GetLog:
        return call_result.GetLog(status="Accepted", filename=LOG_FILE)

    @after(Action.get_log)
    async def after_get_log(self, request_id: int, **_: Any) -> None:
        await run_logged(self._upload(request_id), LOGGER, "log_upload_report_failed", station_id=self.id)

    async def _upload(self, request_id: int) -> None:
        for status in ("Uploading", "Uploaded"):
            await self._call(call.LogStatusNotification(status=status, request_id=request_id))


async def test_get_diagnostics_upload_reaches_the_legacy(proxy: RunningProxy, legacy: LegacyCsms) -> None:
    charger = LogCharger("CPDG01", proxy_url(proxy))
    await charger.connect()
    assert (await charger.boot())["status"] == "Accepted"
    start, stop = "2026-11-24T00:00:00.000Z", "2026-11-24T12:00:00.000Z"
    answer = await legacy._call(
        "CPDG01", call16.GetDiagnostics(location=UPLOAD_URL, retries=1, start_time=start, stop_time=stop)
    )
    assert answer == {"fileName": LOG_FILE}
    await legacy.wait_for(lambda: len(legacy.diagnostics_statuses.get("CPDG01", [])) == 2)
    assert legacy.diagnostics_statuses["CPDG01"] == ["Uploading", "Uploaded"]

    (get_log,) = [payload for action, payload in charger.received_calls if action == "GetLog"]
    assert get_log["logType"] == "DiagnosticsLog"
    assert get_log["log"] == {"remoteLocation": UPLOAD_URL, "oldestTimestamp": start, "latestTimestamp": stop}
    assert get_log["retries"] == 1
    await charger.close()
