"""Run the router: `python -m argus.router` (settings from ARGUS_ROUTER_* variables)."""

import logging

import uvicorn

from argus.adapters.envoy_config import ROUTER_IDLE_TIMEOUT_S
from argus.router.app import create_app
from argus.router.settings import RouterSettings


def main() -> None:
    """Serve the router app with uvicorn."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    s = RouterSettings.from_env()
    uvicorn.run(create_app(s), host=s.host, port=s.port, log_level="warning", access_log=False,
                timeout_graceful_shutdown=5,
                # Keep idle connections longer than Envoy does, so Envoy is always the side that closes them.
                timeout_keep_alive=4 * ROUTER_IDLE_TIMEOUT_S)


if __name__ == "__main__":
    main()
