"""Fixtures for the peer tests: the tiny `ocpp`-library CSMS of native_csms.py on a loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.server import serve
from websockets.typing import Subprotocol

from tests.peers.native_csms import NativeCsms


@pytest.fixture
async def native_csms() -> AsyncIterator[NativeCsms]:
    csms = NativeCsms()
    async with serve(csms.serve, "127.0.0.1", 0, subprotocols=[Subprotocol("ocpp2.0.1")]) as server:
        csms.url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/ocpp201"
        yield csms
