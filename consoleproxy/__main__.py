"""`python -m consoleproxy`: run the console proxy in the foreground until SIGINT or SIGTERM."""

from __future__ import annotations

import logging
import multiprocessing
import sys

from consoleproxy.config import ConfigError, ConsoleProxyConfig
from consoleproxy.redaction import configure_logging
from consoleproxy.server import ConsoleProxyServer

logger = logging.getLogger("consoleproxy")


def main() -> int:
    configure_logging()
    try:
        config = ConsoleProxyConfig.from_env()
    except ConfigError as exc:
        print(f"consoleproxy: {exc}", file=sys.stderr)
        return 2
    # websockify hands each accepted socket, and the server object, to a forked child process.
    multiprocessing.set_start_method("fork", force=True)
    server = ConsoleProxyServer(config)
    try:
        server.start_server()
    except SystemExit as exc:
        # websockify logs why it could not listen, then calls sys.exit() with no status.
        if exc.code in (None, 0):
            logger.error("cannot listen on %s:%s", config.listen_host, config.listen_port)
            return 1
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
