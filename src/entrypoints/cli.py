"""Console scripts `order-service` and `product-service` (INTERFACE §1)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import ipaddress
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence
from typing import NamedTuple, NoReturn

import attrs
from aiohttp import web

from adapters.memory.broker import InMemoryBroker
from entrypoints import event_loop
from entrypoints.apps import (
    build_order_container,
    build_product_container,
    create_order_app,
    create_product_app,
)
from entrypoints.demo import DEMO_PRODUCTS, seed_demo_catalog
from entrypoints.heap import freeze_startup_heap
from entrypoints.http.malformed import JsonErrorAppRunner
from entrypoints.http.product_api import PRODUCT_SERVICE
from entrypoints.logs import configure_logging
from entrypoints.settings import Settings, SettingsError, mask_url, plain_number

DEFAULT_DEV_TOKEN = "dev-admin-token"  # noqa: S105 - printed dev default for make run

log = logging.getLogger(__name__)


def _plain_int(text: str) -> int:
    """An integer as a setting spells it: ASCII digits, no `_` (`int()` takes both)."""
    try:
        return int(plain_number(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _refuse(prog: str, line: str) -> NoReturn:
    """A bad option, setting or address: one line on stderr naming it, exit 2 (INTERFACE §1)."""
    sys.stderr.write(f"{prog}: {line}\n")
    raise SystemExit(2)


class OneLineParser(argparse.ArgumentParser):
    """A bad option: one clear line on stderr, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _parser(prog: str, embedded: bool) -> OneLineParser:
    parser = OneLineParser(
        prog=prog,
        description=(
            "Order Service: prices and accepts orders with Product Service data."
            if prog == "order-service"
            else "Reference Product Service: catalog, product events, event replies."
        ),
        epilog=_environment_help(prog),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    serve = commands.add_parser(
        "serve",
        help="run the service until SIGINT/SIGTERM",
        epilog=_environment_help(prog),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if embedded:
        serve.add_argument(
            "--embedded",
            action="store_true",
            help="both services in one process, in-memory adapters, a demo catalog",
        )
    side = "ORDER_SERVICE" if prog == "order-service" else "PRODUCT_SERVICE"
    serve.add_argument("--host", help=f"listen address ({side}_HOST)")
    serve.add_argument("--port", type=_plain_int, help=f"listen port ({side}_PORT)")
    if prog == "order-service":
        serve.add_argument("--product-service-url", help="PRODUCT_SERVICE_URL")
    serve.add_argument("--redis-url", help="REDIS_URL (unset: in-memory)")
    serve.add_argument("--nats-url", help="NATS_URL (unset: in-memory event bus)")
    serve.add_argument("--instance-id", help="INSTANCE_ID")
    if prog == "order-service":
        serve.add_argument("--admin-token", help="ADMIN_TOKEN")
    serve.add_argument("--log-level", type=str.upper, choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    serve.add_argument("--log-format", type=str.lower, choices=["json", "console"])
    return parser


PRODUCT_SERVICE_SETTINGS = (
    "product_service_host",
    "product_service_port",
    "redis_url",
    "nats_url",
    "nats_stream_replicas",
    "instance_id",
    "log_level",
    "log_format",
)
"""What the reference Product Service reads; the Order Service (and its embedded mode) reads all."""


def _environment_help(prog: str) -> str:
    """--help's list of the environment variables the command reads, with their defaults."""
    lines = ["environment (INTERFACE §2; a flag of the same meaning wins; README, Settings):"]
    for field in attrs.fields(Settings):
        if prog == "product-service" and field.name not in PRODUCT_SERVICE_SETTINGS:
            continue
        default = field.default
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            shown = "random"
        elif field.name == "product_service_url":
            shown = "http://PRODUCT_SERVICE_HOST:PRODUCT_SERVICE_PORT"
        elif isinstance(default, float) and default.is_integer():
            shown = str(int(default))  # as INTERFACE §2 writes it: 30, not 30.0
        else:
            shown = "unset" if default is None else str(default)
        lines.append(f"  {field.name.upper():<28} default: {shown}")
    return "\n".join(lines)


def _settings(prog: str, args: argparse.Namespace) -> Settings:
    side = "order_service" if prog == "order-service" else "product_service"
    overrides = {
        f"{side}_host": args.host,
        f"{side}_port": args.port,
        "product_service_url": getattr(args, "product_service_url", None),
        "redis_url": args.redis_url,
        "nats_url": args.nats_url,
        "instance_id": args.instance_id,
        "admin_token": getattr(args, "admin_token", None),
        "log_level": args.log_level,
        "log_format": args.log_format,
    }
    environ: dict[str, str] = dict(os.environ)
    if prog == "product-service":  # the Order Service's settings in a shared env file are not its own
        environ = {name: value for name, value in environ.items() if name.lower() in PRODUCT_SERVICE_SETTINGS}
    try:
        return Settings.from_env(environ, **overrides)
    except SettingsError as error:
        _refuse(prog, str(error))
    except (TypeError, ValueError) as error:
        _refuse(prog, f"invalid setting: {error}")


class Site(NamedTuple):
    """One service's application and where it listens; `setting` prefixes its HOST/PORT variables."""

    service: str
    app: web.Application
    host: str
    port: int
    setting: str


class CannotListen(Exception):
    """A site could not listen: one line naming the address, the setting and the reason."""

    def __init__(self, site: Site, error: OSError) -> None:
        host_at_fault = isinstance(error, socket.gaierror) or error.errno == errno.EADDRNOTAVAIL
        setting = f"{site.setting}_{'HOST' if host_at_fault else 'PORT'}"
        if not isinstance(error, socket.gaierror) and isinstance(error.errno, int) and error.errno > 0:
            reason = os.strerror(error.errno)
        else:
            reason = error.strerror or str(error) or type(error).__name__
        super().__init__(
            f"cannot listen on {site.host}:{site.port} ({setting}): {reason[:1].lower()}{reason[1:]}"
        )


def _bind(site: Site) -> list[socket.socket]:
    """The site's sockets, bound as asyncio's create_server binds them, before anything starts:
    an address that cannot be had fails at once, before Redis, NATS or the other site are touched."""
    sockets: list[socket.socket] = []
    try:
        infos = socket.getaddrinfo(site.host, site.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
    except (OSError, UnicodeError) as error:  # an unencodable name ("a..b") is a UnicodeError
        for sock in sockets:
            sock.close()
        if isinstance(error, UnicodeError):
            error = socket.gaierror(socket.EAI_NONAME, "not a valid host name")
        raise CannotListen(site, error) from None
    return sockets


async def _serve(sites: list[Site], banner: str | None, warnings: Sequence[str] = ()) -> None:
    bound: list[list[socket.socket]] = []
    runners = []
    try:
        for site in sites:
            bound.append(_bind(site))
        for warning in warnings:
            log.warning("%s", warning)
        for site, sockets in zip(sites, bound, strict=True):
            runner = JsonErrorAppRunner(site.app, access_log=None, handle_signals=False)
            await runner.setup()
            runners.append(runner)
            for sock in sockets:
                await web.SockSite(runner, sock).start()
        freeze_startup_heap()  # started: what exists now lives as long as the process
        for site, sockets in zip(sites, bound, strict=True):
            port = sockets[0].getsockname()[1]
            host = f"[{site.host}]" if ":" in site.host else site.host
            log.info(
                "%s listening on http://%s:%d", site.service, host, port, extra={"service": site.service}
            )
        if banner:
            print(banner, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        for runner in reversed(runners):
            await runner.cleanup()
        for sockets in bound:
            for sock in sockets:
                sock.close()
    for site in sites:
        log.info("%s stopped", site.service, extra={"service": site.service})


def _run(prog: str, sites: list[Site], banner: str | None = None, warnings: Sequence[str] = ()) -> None:
    """Serve until SIGINT/SIGTERM; a site that cannot listen exits 2 with one line on stderr.
    `warnings` are logged once every site is bound."""
    try:
        with contextlib.suppress(KeyboardInterrupt):
            event_loop.run(_serve(sites, banner, warnings))
    except CannotListen as error:
        _refuse(prog, str(error))


def _embedded_banner(settings: Settings, order_url: str, product_url: str) -> str:
    chair = DEMO_PRODUCTS[0].id
    # The dev default is printed so `make run` works out of the box; a token of yours is not.
    token = settings.admin_token if settings.admin_token == DEFAULT_DEV_TOKEN else "$ADMIN_TOKEN"
    called = settings.product_service_url
    calls = (
        ""
        if called in (None, product_url)
        else f"\nOrders priced by {mask_url(called)}   (PRODUCT_SERVICE_URL)"
    )
    return f"""
Order Service    {order_url}   (OpenAPI: {order_url}/openapi.json)
Product Service  {product_url}   (OpenAPI: {product_url}/openapi.json){calls}
Admin token      {token}
Mode             embedded: in-memory cache, stores and event bus; demo catalog loaded

Try it:
  curl -s {product_url}/api/v1/products/{chair}
  curl -s -X POST {order_url}/api/v1/orders -H 'Content-Type: application/json' \\
       -d '{{"userId": "u-1", "items": [{{"productId": "{chair}", "quantity": 2}}]}}'
  curl -s -X PATCH {product_url}/api/v1/products/{chair} -H 'Content-Type: application/json' \\
       -d '{{"currentPrice": 279.99}}'
  curl -s -X POST {order_url}/api/v1/orders/<order id>/pricing-validation
  curl -s -X POST {order_url}/admin/products/{chair}/refresh -H 'Authorization: Bearer {token}'
  curl -s {order_url}/metrics
Stop with Ctrl-C.
"""


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _embedded_settings(prog: str, settings: Settings) -> Settings:
    """The embedded mode's own: in memory whatever REDIS_URL / NATS_URL say (INTERFACE §1; its
    demo catalog must not land in a real store), two distinct ports, the dev token by default."""
    if settings.order_service_port == settings.product_service_port != 0:
        _refuse(
            prog,
            f"ORDER_SERVICE_PORT and PRODUCT_SERVICE_PORT are both {settings.order_service_port}:"
            " embedded mode serves each service on its own port",
        )
    if settings.product_service_port == 0 and not settings.product_service_url:
        _refuse(prog, "PRODUCT_SERVICE_PORT=0: embedded mode needs a fixed port to call its Product Service")
    token = settings.admin_token or DEFAULT_DEV_TOKEN
    return attrs.evolve(settings, redis_url=None, nats_url=None, admin_token=token)


def _embedded_warnings(given: Settings, embedded: Settings) -> list[str]:
    """What the embedded mode tells about the settings it was given; logged once both sites
    listen, so an address that cannot be had stays the one line on stderr (INTERFACE §1)."""
    warnings = []
    ignored = [
        name for name, value in (("REDIS_URL", given.redis_url), ("NATS_URL", given.nats_url)) if value
    ]
    if ignored:
        warnings.append(f"embedded mode runs in memory: {' and '.join(ignored)} not used")
    if given.product_service_url:
        called = mask_url(given.product_service_url)
        warnings.append(
            f"embedded mode: the Order Service calls PRODUCT_SERVICE_URL={called}, not the embedded"
            " Product Service (unset it to use the demo catalog)"
        )
    exposed = [h for h in (embedded.order_service_host, embedded.product_service_host) if not _is_loopback(h)]
    if embedded.admin_token == DEFAULT_DEV_TOKEN and exposed:
        warnings.append(
            f"embedded mode listens on {' and '.join(dict.fromkeys(exposed))} with the documented dev"
            " ADMIN_TOKEN: whoever reaches it may use /admin; set ADMIN_TOKEN to a secret of your own"
        )
    return warnings


def order_service_main(argv: Sequence[str] | None = None) -> None:
    prog = "order-service"
    args = _parser(prog, embedded=True).parse_args(argv)
    settings = _settings(prog, args)
    configure_logging(settings.log_level, settings.log_format, prog, settings.instance_id)
    if not args.embedded:
        order = create_order_app(settings)
        port = settings.order_service_port
        _run(prog, [Site(prog, order, settings.order_service_host, port, "ORDER_SERVICE")])
        return
    given, settings = settings, _embedded_settings(prog, settings)
    product_url = f"http://{settings.product_service_host}:{settings.product_service_port}"
    order_url = f"http://{settings.order_service_host}:{settings.order_service_port}"
    settings = attrs.evolve(settings, product_service_url=settings.product_service_url or product_url)
    broker = InMemoryBroker()
    product_app = create_product_app(settings, container=build_product_container(settings, broker))
    order_app = create_order_app(settings, container=build_order_container(settings, broker))

    async def seed(app: web.Application) -> None:
        await seed_demo_catalog(app[PRODUCT_SERVICE].catalog())

    product_app.on_startup.append(seed)
    product_host, product_port = settings.product_service_host, settings.product_service_port
    order_host, order_port = settings.order_service_host, settings.order_service_port
    sites = [
        Site("product-service", product_app, product_host, product_port, "PRODUCT_SERVICE"),
        Site("order-service", order_app, order_host, order_port, "ORDER_SERVICE"),
    ]
    _run(prog, sites, _embedded_banner(settings, order_url, product_url), _embedded_warnings(given, settings))


def product_service_main(argv: Sequence[str] | None = None) -> None:
    prog = "product-service"
    args = _parser(prog, embedded=False).parse_args(argv)
    settings = _settings(prog, args)
    configure_logging(settings.log_level, settings.log_format, prog, settings.instance_id)
    product = create_product_app(settings)
    port = settings.product_service_port
    _run(prog, [Site(prog, product, settings.product_service_host, port, "PRODUCT_SERVICE")])
