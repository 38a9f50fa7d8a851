"""Serve an index with `iorag serve`'s uvicorn setup in this process; print the URL, then block.

Run as a subprocess by tests that measure the server's own memory.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from service.api import create_app
from service.config import Settings

from ..serving import serve

if __name__ == "__main__":
    settings = Settings(index_dir=Path(sys.argv[1]))
    with serve(create_app(settings)) as url:
        print(url, flush=True)
        while True:
            time.sleep(3600)
