"""python -m service --bundle PATH [--bundle PATH ...] --port N --metrics-port M  (see --help)"""

from __future__ import annotations

import asyncio
import logging
import sys

from nmt.bundle import BundleError
from service.config import parse_args
from service.server import StartupError, serve


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(serve(cfg))
    except (BundleError, StartupError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
