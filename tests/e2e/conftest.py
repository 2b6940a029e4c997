"""Fixtures of the end-to-end tests: a native 2.0.1 CSMS, independent of the code under test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.server import serve

from tests.peers.native_csms import NativeCsms


@pytest.fixture
async def native() -> AsyncIterator[NativeCsms]:
    csms = NativeCsms()
    async with serve(csms.serve, "127.0.0.1", 0, subprotocols=["ocpp2.0.1"]) as server:  # type: ignore[list-item]
        csms.url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/native"
        yield csms
