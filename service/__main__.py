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
    worker = f" [worker {cfg.worker}]" if cfg.worker else ""
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s %(levelname)s %(name)s{worker}: %(message)s")
    try:
        if cfg.workers > 1 and not cfg.worker:
            from service.workers import supervise

            return supervise(cfg, sys.argv[1:] if argv is None else argv)
        asyncio.run(serve(cfg))
    except (BundleError, StartupError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
