"""Run the router: `python -m argus.router` (settings from ARGUS_ROUTER_* variables)."""

import logging

import uvicorn

from argus.router.app import create_app
from argus.router.settings import RouterSettings


def main() -> None:
    """Serve the router app with uvicorn."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    s = RouterSettings.from_env()
    uvicorn.run(create_app(s), host=s.host, port=s.port, log_level="warning", access_log=False,
                timeout_graceful_shutdown=5)


if __name__ == "__main__":
    main()
