"""translators/ is sans-I/O: importing it pulls in no event loop, socket, Redis or metrics library."""

from __future__ import annotations

import subprocess
import sys


def test_translators_import_no_io_libraries() -> None:
    code = (
        "import sys\n"
        "import translators.dispatch, translators.bridge, translators.passthrough, translators.schemas\n"
        "translators.schemas.load()\n"
        "bad = [m for m in ('asyncio', 'websockets', 'redis', 'prometheus_client', 'aiohttp') "
        "if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
