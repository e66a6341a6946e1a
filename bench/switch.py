"""An HTTP dependency whose /health answers the status code written in a file:
python bench/switch.py PORT FLAG_FILE (200 while the file is missing)."""

from __future__ import annotations

import sys
from pathlib import Path

from aiohttp import web


def main() -> None:
    port, flag = int(sys.argv[1]), Path(sys.argv[2])

    async def health(request: web.Request) -> web.Response:
        status = int(flag.read_text()) if flag.exists() else 200
        return web.Response(status=status, text=str(status))

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/", health)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
