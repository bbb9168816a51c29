"""`python -m tests.support.exchange --port N`: serve the exchange until SIGTERM or SIGINT.

Every `ExchangeSettings` option is a flag (`--token-ttl-s 5`); the users who may log in
come from `EXCHANGE_USERS` (`alice:pw1,bob:pw2`), never from the command line.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

from tests.support.exchange.app import running_exchange
from tests.support.exchange.settings import ExchangeSettings, cli_options


def _settings(argv: list[str]) -> tuple[ExchangeSettings, int]:
    parser = argparse.ArgumentParser(prog="python -m tests.support.exchange")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: a free one)")
    for name, kind, default, text in cli_options():
        flag = "--" + name.replace("_", "-")
        if kind is bool:
            parser.add_argument(flag, action="store_true", help=text)
        else:
            parser.add_argument(flag, type=kind, default=default, help=f"{text} ({default})")
    args = vars(parser.parse_args(argv))
    port = args.pop("port")
    users = os.environ.get("EXCHANGE_USERS")
    if users:
        pairs = [pair.partition(":") for pair in users.split(",")]
        if not all(name and sep and pw for name, sep, pw in pairs):
            parser.error("EXCHANGE_USERS must read name:password[,name:password...]")
        args["users"] = tuple((name, pw) for name, _, pw in pairs)
    try:
        return ExchangeSettings(**args), port
    except ValueError as exc:
        parser.error(str(exc))


async def _serve(settings: ExchangeSettings, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with running_exchange(settings, port) as running:
        print(f"exchange listening on {running.url}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    """Parse the flags and serve until a signal."""
    settings, port = _settings(sys.argv[1:] if argv is None else argv)
    asyncio.run(_serve(settings, port))


if __name__ == "__main__":
    main()
