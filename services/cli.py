"""The `cityhub` command: run the hub, serve one service, migrate, manage areas and identity."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import sys
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import httpx
import typer
import uvicorn
import uvloop
from fastapi import FastAPI
from sqlalchemy import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from services.gateway.live_ws import MAX_CLIENT_FRAME
from services.serving import SHUTDOWN_HTTP_SHARE, GracefulServer
from shared.areas import Hierarchy, HierarchyError, generate_demo, load_geojson_file
from shared.auth import resolve_jwt_secret
from shared.db.areas import replace_hierarchy
from shared.db.engine import create_engine, create_sessionmaker
from shared.errors import ConfigError, HubError
from shared.logs import configure_logging, is_debug
from shared.migrations.runner import current_revision
from shared.mqtt_broker import BROKER_HINT
from shared.netutil import ensure_port_free
from shared.runtime import ensure_hierarchy, ensure_schema
from shared.service import tune_gc
from shared.settings import SERVICE_NAMES, ServiceName, Settings

if TYPE_CHECKING:
    from simulators.demo import DemoAccess

logger = logging.getLogger(__name__)

app = typer.Typer(help="cityhub: the city operations (一网统管) event hub.", no_args_is_help=True)
areas_app = typer.Typer(help="The city / district / street hierarchy.", no_args_is_help=True)
users_app = typer.Typer(help="People who sign in.", no_args_is_help=True)
keys_app = typer.Typer(help="Integrators' API keys.", no_args_is_help=True)
simulate_app = typer.Typer(help="Realistic load against a running hub.", no_args_is_help=True)
app.add_typer(areas_app, name="areas")
app.add_typer(simulate_app, name="simulate")
app.add_typer(users_app, name="users")
app.add_typer(keys_app, name="keys")
audit_app = typer.Typer(help="Tamper checks of the ticket timelines.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
sensors_app = typer.Typer(help="IoT sensors and their alarm rules.", no_args_is_help=True)
mqtt_app = typer.Typer(help="The MQTT broker's logins and topic rights.", no_args_is_help=True)
bench_app = typer.Typer(help="Performance figures (see docs/benchmarks.md).", no_args_is_help=True)
app.add_typer(sensors_app, name="sensors")
app.add_typer(mqtt_app, name="mqtt")
app.add_typer(bench_app, name="bench")
kpis_app = typer.Typer(help="KPIs and the facts they are counted from.", no_args_is_help=True)
app.add_typer(kpis_app, name="kpis")

T = TypeVar("T")
WS_PING_S = 20.0  # websocket protocol ping interval and the time a pong may take


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(2)


def _run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine, turning expected failures into one-line errors."""
    try:
        return asyncio.run(main())
    except (HubError, HierarchyError) as exc:
        raise _fail(str(exc)) from None


def _preflight(settings: Settings, *, broker: bool, migrate: bool) -> None:
    """Fail fast, in one line, on what would otherwise surface as a start-up traceback."""
    ensure_port_free(settings.http_host, settings.http_port, "CITYHUB_HTTP_PORT")
    if broker:
        host, port = settings.mqtt_endpoint
        ensure_port_free(host, port, "CITYHUB_MQTT_PORT", hint=BROKER_HINT)
    resolve_jwt_secret(settings)
    if not migrate:

        async def check_schema() -> None:
            engine = create_engine(settings)
            try:
                await ensure_schema(engine, migrate=False)
            finally:
                await engine.dispose()

        asyncio.run(check_schema())


def _serve(
    api: FastAPI,
    settings: Settings,
    banner: Callable[[str], None],
    simulators: DemoAccess | None = None,
) -> None:
    config = uvicorn.Config(
        api,
        host=settings.http_host,
        port=settings.http_port,
        log_level=settings.log_level.lower(),
        log_config=None,  # uvicorn's lines go through the hub's handler (JSON, request ids)
        access_log=(
            is_debug(settings.log_level) if settings.access_log is None else settings.access_log
        ),
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_s * SHUTDOWN_HTTP_SHARE),
        ws_per_message_deflate=False,  # compression costs ~40 % of websocket fan-out
        ws_max_size=MAX_CLIENT_FRAME,  # /ws/live clients send only auth and ping frames
        ws_ping_interval=WS_PING_S,  # protocol pings keep idle sockets open through proxies…
        ws_ping_timeout=WS_PING_S,  # …and drop peers that stopped answering
    )
    server = GracefulServer(config, api, settings.shutdown_grace_s)

    async def main() -> None:
        task = asyncio.create_task(server.serve())
        stopper = asyncio.create_task(server.stop_on_signal())
        # uvicorn offers no start-up event to wait on
        while not server.started and not task.done():  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        url = f"http://{settings.http_host}:{settings.http_port}"
        if server.started:
            tune_gc()
            banner(url)
        demo = None
        if server.started and simulators:
            from simulators.demo import run_demo

            mqtt = settings.mqtt_endpoint
            demo = asyncio.create_task(
                run_demo(
                    url, simulators.key, mqtt, settings.mqtt_topic_root, staff=simulators.staff
                )
            )
        await task
        for helper in (demo, stopper):
            if helper is not None:
                helper.cancel()
                await asyncio.gather(helper, return_exceptions=True)

    # uvloop, as `uvicorn` itself would pick: about a third more requests per second than asyncio's
    # default loop for the same code (docs/benchmarks.md).
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main())
    finally:
        server.stopped()
    if not server.started:
        raise typer.Exit(2)


def _settings() -> Settings:
    """The settings of a command that uses the database; says on stderr which database that is."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    typer.echo(f"database: {database_label(settings)}", err=True)
    return settings


def database_label(settings: Settings) -> str:
    """The database the settings name, as a person reads it: a SQLite file's absolute path, or
    the configured URL with its password masked."""
    if settings.database_url is None:
        return f"sqlite:///{_sqlite_file(settings)}"
    try:
        return make_url(settings.database_url).render_as_string(hide_password=True)
    except ArgumentError:  # not a URL SQLAlchemy reads: mask anything between ':' and '@'
        return re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", settings.database_url)


def _sqlite_file(settings: Settings) -> Path:
    database = make_url(settings.sqlalchemy_url).database
    assert database is not None  # the settings always name the file in the data dir
    return Path(database)


def _no_hub(settings: Settings) -> HubError:
    if settings.database_url is None:
        where = f"in {settings.data_dir.resolve()} (the data directory, CITYHUB_DATA_DIR)"
        fix = "set CITYHUB_DATA_DIR to the hub's data directory or run this where the hub runs"
    else:
        where = f"at {database_label(settings)} (CITYHUB_DATABASE_URL)"
        fix = "set CITYHUB_DATABASE_URL to the hub's database"
    return HubError(
        f"no cityhub database {where}: {fix}; to set up a new hub there, run `cityhub migrate` "
        "(or `cityhub run`) first"
    )


async def _hub_engine(settings: Settings, *, existing: bool = True) -> AsyncEngine:
    """An engine on the hub's database at the current schema (migrated when embedded). With
    `existing`, a command that manages a hub refuses to create one: it fails naming where it
    looked, instead of leaving an empty database that no running hub reads."""
    if existing and settings.database_url is None and not _sqlite_file(settings).exists():
        raise _no_hub(settings)
    engine = create_engine(settings)
    try:
        if existing:
            try:
                revision = await current_revision(engine)
            except (SQLAlchemyError, OSError) as exc:
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise HubError(
                    f"cannot open the database {database_label(settings)}: {reason}"
                ) from None
            if revision is None:
                raise _no_hub(settings)
        await ensure_schema(engine, migrate=settings.embedded)
    except BaseException:
        await engine.dispose()
        raise
    return engine


@app.command()
def run(
    simulate: Annotated[
        bool,
        typer.Option(
            "--simulate",
            help="feed the hub with simulated hotline, grid and sensor load, and simulated "
            "field staff and dispatchers working the tickets of a few streets",
        ),
    ] = False,
) -> None:
    """Run all four services in one process (embedded mode unless backends are configured)."""
    from services.hub import create_hub_app

    settings = _settings()

    def banner(url: str) -> None:
        host, port = settings.mqtt_endpoint
        typer.secho(f"cityhub is running: open {url}/", fg=typer.colors.GREEN, bold=True)
        typer.echo(f"  API docs {url}/docs · health {url}/healthz · MQTT {host}:{port}")
        if simulate:
            typer.echo(
                "  simulators: hotline (Open311), grid reports and MQTT sensors are feeding it"
            )
            if access is not None and access.staff is not None:
                streets = len(access.staff.team.streets)
                typer.echo(
                    f"  simulated crews and dispatchers work the tickets of {streets} streets"
                )

    try:
        _preflight(settings, broker=settings.mqtt_url is None, migrate=True)
        access = (
            _run(lambda: _with_session(settings, _simulator_access, existing=False))
            if simulate
            else None
        )
        _serve(create_hub_app(settings), settings, banner, simulators=access)
    except HubError as exc:
        raise _fail(str(exc)) from None


async def _simulator_access(session: AsyncSession, hierarchy: Hierarchy) -> DemoAccess:
    """The demo simulators' integrator key and field staff, new for each run."""
    from services.gateway.identity import replace_api_key
    from simulators.demo import DemoAccess
    from simulators.field_staff import enlist_demo_staff

    key = await replace_api_key(session, "simulator")
    return DemoAccess(key, await enlist_demo_staff(session, hierarchy))


@app.command()
def serve(
    service: Annotated[str, typer.Argument(help="ingest | dispatch | metrics | gateway")],
) -> None:
    """Run one service in production mode (PostgreSQL, Redis, external MQTT broker)."""
    if service not in SERVICE_NAMES:
        raise _fail(f"unknown service {service!r}: choose one of {', '.join(SERVICE_NAMES)}")
    settings = _settings()
    if not settings.database_url or not settings.redis_url:
        raise _fail(
            "`cityhub serve` runs one service in production mode: set CITYHUB_DATABASE_URL and "
            "CITYHUB_REDIS_URL (or use `cityhub run` for the embedded all-in-one)"
        )
    name = service  # narrowed to ServiceName by the check above
    factory = _service_factory(name)

    def banner(url: str) -> None:
        typer.secho(f"cityhub {name} is running at {url}", fg=typer.colors.GREEN)

    try:
        _preflight(settings, broker=False, migrate=False)
        _serve(factory(settings), settings, banner)
    except HubError as exc:
        raise _fail(str(exc)) from None


def _service_factory(name: ServiceName) -> Callable[[Settings], FastAPI]:
    if name == "ingest":
        from services.ingest.app import create_app
    elif name == "dispatch":
        from services.dispatch.app import create_app
    elif name == "metrics":
        from services.metrics.app import create_app
    else:
        from services.gateway.app import create_app
    return create_app


@app.command()
def migrate() -> None:
    """Apply database migrations."""
    settings = _settings()

    async def main() -> None:
        engine = create_engine(settings)
        try:
            await ensure_schema(engine, migrate=True)
        finally:
            await engine.dispose()

    _run(main)
    typer.echo("database schema is up to date")


@areas_app.command("generate")
def areas_generate(
    out: Annotated[Path, typer.Option("--out", "-o", help="GeoJSON file to write")] = Path(
        "chongqing-demo.geojson"
    ),
    seed: Annotated[int, typer.Option(help="same seed, same map")] = 20241,
) -> None:
    """Write the generated Chongqing demo hierarchy (1 + 41 + 1031) as GeoJSON."""
    hierarchy = generate_demo(seed)
    out.write_text(json.dumps(hierarchy.to_geojson(), ensure_ascii=False))
    typer.echo(f"wrote {len(hierarchy)} areas to {out}")


@areas_app.command("import")
def areas_import(file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)]) -> None:
    """Replace the stored hierarchy with a city's own GeoJSON (validated first)."""
    settings = _settings()

    async def main() -> int:
        hierarchy = load_geojson_file(file)
        engine = await _hub_engine(settings)
        try:
            async with create_sessionmaker(engine)() as session, session.begin():
                await replace_hierarchy(session, hierarchy)
        finally:
            await engine.dispose()
        return len(hierarchy)

    count = _run(main)
    typer.echo(f"imported {count} areas from {file}; restart running services to load them")


async def _with_session(
    settings: Settings,
    work: Callable[[AsyncSession, Hierarchy], Awaitable[T]],
    *,
    existing: bool = True,
) -> T:
    engine = await _hub_engine(settings, existing=existing)
    try:
        sessions = create_sessionmaker(engine)
        hierarchy = await ensure_hierarchy(sessions)
        async with sessions() as session, session.begin():
            return await work(session, hierarchy)
    finally:
        await engine.dispose()


@users_app.command("add")
def users_add(
    username: str,
    role: Annotated[
        str,
        typer.Option(
            help="admin | dispatcher | field_staff | manager (integrators use `cityhub keys add`)"
        ),
    ],
    scope: Annotated[str, typer.Option(help="city | district:<centre_id> | street:<code>")],
    password: Annotated[str, typer.Option(prompt=True, hide_input=True)],
    department: Annotated[
        str | None,
        typer.Option(
            help="required for field_staff; must serve the scope (cgj, cgj@500103, office@<street>)"
        ),
    ] = None,
) -> None:
    """Add a user."""
    from services.gateway.identity import create_user

    settings = _settings()

    async def work(session: AsyncSession, hierarchy: Hierarchy) -> None:
        await create_user(
            session,
            hierarchy,
            username=username,
            password=password,
            role=role,
            scope=scope,
            department=department,
        )

    _run(lambda: _with_session(settings, work))
    typer.echo(f"added user {username} ({role}, {scope})")


@users_app.command("list")
def users_list() -> None:
    """List users."""
    from services.gateway.identity import list_users

    settings = _settings()

    async def work(session: AsyncSession, _h: Hierarchy) -> list[tuple[str, ...]]:
        users = await list_users(session)
        return [
            (u.username, u.role, u.scope, u.department or "-", _status(disabled=u.disabled))
            for u in users
        ]

    for row in _run(lambda: _with_session(settings, work)):
        typer.echo("\t".join(row))


def _status(*, disabled: bool) -> str:
    return "disabled" if disabled else "active"


def _set_disabled(username: str, disabled: bool) -> None:
    from services.gateway.identity import set_user_disabled

    settings = _settings()

    async def work(session: AsyncSession, _h: Hierarchy) -> bool:
        return await set_user_disabled(session, username, disabled)

    changed = _run(lambda: _with_session(settings, work))
    state = _status(disabled=disabled)
    typer.echo(f"user {username} is {state}" + ("" if changed else " (it was already)"))


@users_app.command("disable")
def users_disable(username: str) -> None:
    """Disable a user: sign-in and the user's tokens are refused from now on (within a second)."""
    _set_disabled(username, True)


@users_app.command("enable")
def users_enable(username: str) -> None:
    """Enable a disabled user again."""
    _set_disabled(username, False)


@keys_app.command("add")
def keys_add(name: str) -> None:
    """Create an integrator API key and print it (shown only this once)."""
    from services.gateway.identity import create_api_key

    settings = _settings()

    async def work(session: AsyncSession, _h: Hierarchy) -> str:
        return await create_api_key(session, name)

    typer.echo(_run(lambda: _with_session(settings, work)))


@keys_app.command("list")
def keys_list() -> None:
    """List API keys: name, role, created, and active or when revoked (never the key itself)."""
    from services.gateway.identity import list_api_keys

    settings = _settings()

    async def work(session: AsyncSession, _h: Hierarchy) -> list[tuple[str, ...]]:
        keys = await list_api_keys(session)
        return [
            (
                k.name,
                k.role,
                k.created_at.isoformat(timespec="seconds"),
                "active" if k.revoked_at is None else f"revoked {k.revoked_at:%Y-%m-%dT%H:%M:%S%z}",
            )
            for k in keys
        ]

    for row in _run(lambda: _with_session(settings, work)):
        typer.echo("\t".join(row))


@keys_app.command("revoke")
def keys_revoke(name: str) -> None:
    """Revoke an API key: HTTP refuses it within a second, the MQTT broker at the next login."""
    from services.gateway.identity import revoke_api_key

    settings = _settings()

    async def work(session: AsyncSession, _h: Hierarchy) -> Any:
        return await revoke_api_key(session, name)

    earlier = _run(lambda: _with_session(settings, work))
    if earlier is not None:
        typer.echo(f"API key {name} was already revoked at {earlier.isoformat(timespec='seconds')}")
        return
    typer.echo(f"revoked API key {name}")
    if settings.mqtt_url is not None:  # Mosquitto reads its logins from the exported files
        typer.secho(
            "note: regenerate Mosquitto's files (cityhub mqtt export-auth) and send it SIGHUP",
            err=True,
        )


@sensors_app.command("import")
def sensors_import(file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)]) -> None:
    """Register or replace sensors from a CSV file (all rows checked before any is stored)."""
    from datetime import UTC, datetime

    from services.ingest.sensors.csv_import import import_sensors, parse_sensor_csv
    from shared.catalogue.store import ensure_catalogue

    settings = _settings()

    async def main() -> tuple[int, int]:
        engine = await _hub_engine(settings)
        try:
            sessions = create_sessionmaker(engine)
            catalogue = await ensure_catalogue(sessions)
            now = datetime.now(UTC)
            rows = parse_sensor_csv(file.read_text("utf-8"), catalogue, now)
            async with sessions() as session, session.begin():
                return await import_sensors(session, rows, now)
        finally:
            await engine.dispose()

    created, updated = _run(main)
    typer.echo(
        f"imported {created + updated} sensors from {file} ({created} new, {updated} updated)"
    )


@mqtt_app.command("export-auth")
def mqtt_export_auth(
    passwords: Annotated[Path, typer.Option(help="Mosquitto password_file to write")] = Path(
        "mosquitto.passwd"
    ),
    acl: Annotated[Path, typer.Option(help="Mosquitto acl_file to write")] = Path("mosquitto.acl"),
) -> None:
    """Write Mosquitto's password file (integrators' API keys) and ACL (own sensors' topics).

    Ingest's own login comes from CITYHUB_MQTT_USERNAME / CITYHUB_MQTT_PASSWORD. Reload Mosquitto
    afterwards (SIGHUP) so it reads them.
    """
    from services.ingest.mqtt_auth import mosquitto_auth

    settings = _settings()
    login = None
    if settings.mqtt_username and settings.mqtt_password:
        login = (settings.mqtt_username, settings.mqtt_password.get_secret_value())

    async def main() -> Any:
        engine = await _hub_engine(settings)
        try:
            async with create_sessionmaker(engine)() as session:
                return await mosquitto_auth(session, settings.mqtt_topic_root, login)
        finally:
            await engine.dispose()

    auth = _run(main)
    passwords.touch(mode=0o600)
    passwords.write_text(auth.passwords)
    acl.write_text(auth.acl)
    typer.echo(
        f"wrote {auth.users} logins to {passwords} and {auth.sensors} sensor topics to {acl}"
    )
    if login is None:
        typer.secho(
            "warning: no ingest login (set CITYHUB_MQTT_USERNAME and CITYHUB_MQTT_PASSWORD)",
            fg=typer.colors.YELLOW,
            err=True,
        )
    if auth.skipped:
        typer.secho(
            f"warning: left out {len(auth.skipped)} key(s) made before MQTT intake or with names "
            f"Mosquitto cannot hold: {', '.join(auth.skipped[:10])} (issue new keys for them)",
            fg=typer.colors.YELLOW,
            err=True,
        )


@audit_app.command("verify")
def audit_verify() -> None:
    """Check every ticket's hash-chained timeline; exit 1 naming each ticket whose chain broke."""
    from services.dispatch.timeline import ChainBreak, verify_all

    settings = _settings()

    async def main() -> list[ChainBreak]:
        engine = await _hub_engine(settings)
        try:
            async with create_sessionmaker(engine)() as session:
                return list(await verify_all(session))
        finally:
            await engine.dispose()

    breaks = _run(main)
    for found in breaks:
        typer.secho(
            f"ticket {found.ticket_id}: entry {found.seq}: {found.reason}",
            fg=typer.colors.RED,
            err=True,
        )
    if breaks:
        typer.secho(f"{len(breaks)} ticket timeline(s) fail verification", err=True)
        raise typer.Exit(1)
    typer.echo("every ticket timeline verifies")


def _sim_target(url: str | None, key: str | None) -> tuple[str, str]:
    settings = Settings()
    base = url or f"http://{settings.http_host}:{settings.http_port}"
    if not key:
        raise _fail("an integrator API key is needed: --key KEY (cityhub keys add NAME)")
    return base, key


UrlOption = Annotated[str | None, typer.Option(help="hub base URL (default: this host's)")]
KeyOption = Annotated[str | None, typer.Option(envvar="CITYHUB_SIM_KEY", help="API key")]
RateOption = Annotated[float, typer.Option(help="mean arrivals per second")]
CountOption = Annotated[int | None, typer.Option(help="stop after this many")]
DurationOption = Annotated[float | None, typer.Option(help="stop after this many seconds")]


@simulate_app.command("hotline")
def simulate_hotline(
    url: UrlOption = None,
    key: KeyOption = None,
    rate: RateOption = 1.0,
    count: CountOption = None,
    duration: DurationOption = None,
    flat: Annotated[bool, typer.Option(help="ignore the time-of-day profile")] = False,
) -> None:
    """12345 complaints through Open311, shaped by time of day, weighted by population."""
    from simulators import hotline
    from simulators.city import fetch_streets

    base, api_key = _sim_target(url, key)

    async def simulate() -> None:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            streets = await fetch_streets(client, {"X-API-Key": api_key})
            await hotline.run(
                client,
                api_key,
                streets,
                rate_per_s=rate,
                count=count,
                duration_s=duration,
                shaped=not flat,
            )

    asyncio.run(simulate())


@simulate_app.command("grid")
def simulate_grid(
    url: UrlOption = None,
    key: KeyOption = None,
    rate: RateOption = 0.5,
    count: CountOption = None,
    duration: DurationOption = None,
    workers: Annotated[int, typer.Option(help="grid workers on patrol")] = 200,
) -> None:
    """Grid workers' reports with photos from their phones."""
    from simulators import grid
    from simulators.city import fetch_streets

    base, api_key = _sim_target(url, key)
    headers = {"X-API-Key": api_key}

    async def simulate() -> None:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            streets = await fetch_streets(client, headers)
            await grid.run(
                client,
                headers,
                streets,
                rate_per_s=rate,
                count=count,
                duration_s=duration,
                workers=workers,
            )

    asyncio.run(simulate())


@simulate_app.command("sensors")
def simulate_sensors(
    url: UrlOption = None,
    key: KeyOption = None,
    sensors: Annotated[int, typer.Option(help="sensors in the fleet")] = 100,
    rate: Annotated[float, typer.Option(help="readings per second, whole fleet")] = 10.0,
    count: CountOption = None,
    duration: DurationOption = None,
    crossings: Annotated[
        float, typer.Option(help="chance per reading that a threshold crossing starts")
    ] = 0.01,
    silent: Annotated[float, typer.Option(help="share of sensors that go silent")] = 0.02,
    mqtt_url: Annotated[
        str | None, typer.Option(help="broker (default: CITYHUB_MQTT_URL or the embedded one)")
    ] = None,
    prefix: Annotated[str, typer.Option(help="sensor ids are PREFIX0001, ...")] = "sim-",
    register: Annotated[bool, typer.Option(help="register the fleet through the API first")] = True,
    seed: Annotated[int, typer.Option(help="same seed, same fleet")] = 1,
) -> None:
    """A fleet of sensors publishing readings over MQTT: noise, drift, crossings, silences."""
    from simulators import sensor_fleet

    base, api_key = _sim_target(url, key)
    settings = Settings()
    host, port = settings.mqtt_endpoint
    if mqtt_url:
        host, port = Settings(mqtt_url=mqtt_url).mqtt_endpoint

    async def simulate() -> None:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            fleet = sensor_fleet.Fleet.generate(sensors, prefix=prefix, rate_per_s=rate, seed=seed)
            username = await sensor_fleet.register(client, api_key, fleet, put=register)
        await sensor_fleet.run(
            fleet,
            host=host,
            port=port,
            username=username,
            password=api_key,
            root=settings.mqtt_topic_root,
            rate_per_s=rate,
            count=count,
            duration_s=duration,
            crossing_chance=crossings,
            silent_share=silent,
            seed=seed,
        )

    asyncio.run(simulate())


@bench_app.command("ingest")
def bench_ingest(
    sensors: Annotated[int, typer.Option(help="registered sensors")] = 100_000,
    messages: Annotated[int, typer.Option(help="readings per run")] = 60_000,
    repeat: Annotated[int, typer.Option(help="runs (the median is reported)")] = 3,
) -> None:
    """Sensor readings over MQTT through ingest next to a bare paho loop (real Mosquitto)."""
    from simulators import bench_ingest_mqtt

    bench_ingest_mqtt.main(
        ["--sensors", str(sensors), "--messages", str(messages), "--repeat", str(repeat)]
    )


@bench_app.command("live")
def bench_live(
    clients: Annotated[
        int, typer.Option(help="websocket clients: 5 % city, 20 % district, 75 % street screens")
    ] = 1_000,
    rate: Annotated[float, typer.Option(help="ticket changes per second (steady phase)")] = 200.0,
    seconds: Annotated[float, typer.Option(help="steady phase length, per server")] = 60.0,
    real_rate: Annotated[
        float, typer.Option(help="hotline events/s through ingest and dispatch (0: skip)")
    ] = 20.0,
    real_seconds: Annotated[float, typer.Option(help="length of that phase")] = 20.0,
    quick: Annotated[bool, typer.Option(help="at most 10 s phases and 3 s steps (smoke)")] = False,
    saturation: Annotated[
        bool, typer.Option(help="also find the highest delivery rate each server sustains")
    ] = True,
    as_json: Annotated[
        bool, typer.Option("--json", help="figures as JSON on stdout (the table on stderr)")
    ] = False,
    postgres: Annotated[
        str, typer.Option(help="PostgreSQL server (a throwaway database is made there)")
    ] = "postgresql://postgres@127.0.0.1:5432/postgres",
    redis: Annotated[str, typer.Option(help="Redis (keys under a throwaway prefix)")] = (
        "redis://127.0.0.1:6379/0"
    ),
) -> None:
    """Live screens: `/ws/live` via metrics and the gateway next to a bare websockets server."""
    from simulators import bench_live as live_bench

    argv = ["--clients", str(clients), "--rate", str(rate), "--seconds", str(seconds)]
    argv += ["--real-rate", str(real_rate), "--real-seconds", str(real_seconds)]
    argv += ["--postgres", postgres, "--redis", redis]
    argv += ["--quick"] * quick + ["--no-saturation"] * (not saturation) + ["--json"] * as_json
    live_bench.main(argv)


@bench_app.command("e2e")
def bench_e2e(
    profile: Annotated[
        str, typer.Option(help="chongqing (a compressed day) | capacity (rising event rates)")
    ] = "chongqing",
    replicas: Annotated[int, typer.Option(help="replicas of ingest, dispatch and gateway")] = 1,
    duration: Annotated[float, typer.Option(help="chongqing: seconds of load")] = 300.0,
    speed: Annotated[float, typer.Option(help="chongqing: day compression (×)")] = 100.0,
    steps: Annotated[str, typer.Option(help="capacity: events/s of each step")] = (
        "100,200,400,700,1000,1400,2000,2800"
    ),
    step_seconds: Annotated[float, typer.Option(help="capacity: length of each step")] = 20.0,
    p99_limit_ms: Annotated[
        float, typer.Option(help="capacity: a step holds while event → screen p99 is within this")
    ] = 1_000.0,
    intake: Annotated[
        str, typer.Option(help="capacity: batch (POST /api/v1/events/batch) | single")
    ] = "batch",
    tickets_per_day: Annotated[
        float, typer.Option(help="chongqing: hotline and grid tickets a (real) day")
    ] = 12_000.0,
    sensors: Annotated[int, typer.Option(help="chongqing: sensors (0: none)")] = 10_000,
    sensor_speed: Annotated[
        float, typer.Option(help="chongqing: reading rate × (1: real rate; alarms follow --speed)")
    ] = 1.0,
    alarm_share: Annotated[
        float, typer.Option(help="chongqing: share of readings over a threshold (a real day)")
    ] = 0.005,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="also write the figures as JSON to this file")
    ] = None,
    gateway: Annotated[
        list[str] | None,
        typer.Option(help="drive a running stack: a gateway's URL (repeat per replica)"),
    ] = None,
    username: Annotated[str | None, typer.Option(help="running stack: a city-scope user")] = None,
    password: Annotated[str | None, typer.Option(help="running stack: its password")] = None,
    api_key: Annotated[str | None, typer.Option(help="running stack: an integrator key")] = None,
    database_url: Annotated[
        str | None, typer.Option(help="running stack: PostgreSQL (read: links and timers)")
    ] = None,
    topic_root: Annotated[str, typer.Option(help="running stack: its MQTT topic root")] = (
        "cityhub/v1"
    ),
    mqtt: Annotated[str, typer.Option(help="Mosquitto")] = "mqtt://127.0.0.1:1883",
    postgres: Annotated[
        str, typer.Option(help="PostgreSQL server (a throwaway database is made there)")
    ] = "postgresql://postgres@127.0.0.1:5432/postgres",
    redis: Annotated[str, typer.Option(help="Redis (keys under a throwaway prefix)")] = (
        "redis://127.0.0.1:6379/0"
    ),
) -> None:
    """End to end: the production stack as processes, driven by the simulators (intake, event →
    websocket latency, timer lag, CPU and memory per process)."""
    from simulators import bench_e2e as e2e

    argv = ["--profile", profile, "--replicas", str(replicas), "--duration", str(duration)]
    argv += ["--speed", str(speed), "--steps", steps, "--step-seconds", str(step_seconds)]
    argv += ["--intake", intake, "--sensors", str(sensors), "--mqtt", mqtt]
    argv += ["--tickets-per-day", str(tickets_per_day), "--sensor-speed", str(sensor_speed)]
    argv += ["--alarm-share", str(alarm_share), "--p99-limit-ms", str(p99_limit_ms)]
    argv += ["--postgres", postgres, "--redis", redis, "--topic-root", topic_root]
    argv += ["--json", str(json_path)] if json_path else []
    for url in gateway or []:
        argv += ["--gateway", url]
    for flag, value in (("--username", username), ("--password", password),
                        ("--api-key", api_key), ("--database-url", database_url)):  # fmt: skip
        if value is not None:
            argv += [flag, value]
    e2e.main(argv)


@kpis_app.command("recompute")
def kpis_recompute(
    window: Annotated[
        str | None, typer.Option(help="today | 24h | 7d | 30d (default: all four)")
    ] = None,
) -> None:
    """Rebuild every KPI fact from the stored events, tickets and ticket timelines (the figures
    the incremental path keeps), then print the city's figures as JSON."""
    from datetime import UTC, datetime

    from services.metrics.figures import WINDOWS
    from services.metrics.kpis import KpiContext
    from services.metrics.recompute import recompute
    from shared.catalogue.store import ensure_catalogue

    windows = [w for w in WINDOWS if window in (None, w)]
    if not windows:
        raise _fail(f"unknown window {window!r}: choose one of {', '.join(WINDOWS)}")
    settings = _settings()

    async def main() -> dict[str, Any]:
        engine = await _hub_engine(settings)
        try:
            sessions = create_sessionmaker(engine)
            hierarchy = await ensure_hierarchy(sessions)
            catalogue = await ensure_catalogue(sessions)
            ctx = KpiContext.build(settings, hierarchy, lambda: catalogue)
            return await recompute(sessions, ctx, windows, datetime.now(UTC))
        finally:
            await engine.dispose()

    typer.echo(json.dumps(_run(main), ensure_ascii=False, indent=2))


def main() -> None:
    """Entry point of the `cityhub` console script."""
    try:
        app()
    except ConfigError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)
