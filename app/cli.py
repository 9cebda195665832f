"""The `allot` command: serve, db upgrade, token, policy check."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence

from pydantic import ValidationError

from app.settings import ConfigurationError, Settings, get_settings


def _settings() -> Settings:
    try:
        return get_settings()
    except ValidationError as exc:
        # One line naming the setting; pydantic's message never repeats the value given.
        first = exc.errors()[0]
        name = "_".join(str(p) for p in first.get("loc", ())).upper()
        message = str(first.get("msg", "")).removeprefix("Value error, ")
        raise ConfigurationError(f"ALLOT_{name}: {message}" if name else message) from None


# Where an operator makes room for the metrics of several workers, as the error says.
_WRITABLE_HINT = "mount a writable emptyDir or tmpfs there (or at /tmp)"


def _metrics_dir_for_workers(workers: int) -> None:
    """Several workers share one /metrics through files in PROMETHEUS_MULTIPROC_DIR
    (prometheus_client's own setting): the directory named there, or a fresh one in the
    temporary directory.

    Set before any worker starts (they inherit it), and before app.observability is imported
    (its metrics open their files there at once); emptied at start, since values left by a
    previous run would be added to this run's. On a read-only root with no writable place, a
    one-line configuration error names the setting, never a traceback.
    """
    import atexit
    import os
    import shutil
    import tempfile
    from pathlib import Path

    configured = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if workers <= 1 and not configured:
        return
    try:
        if configured:
            directory = Path(configured)
            directory.mkdir(parents=True, exist_ok=True)
            for stale in directory.glob("*.db"):
                stale.unlink()
            with tempfile.TemporaryFile(dir=directory):  # writable, not only present
                return
        fresh = tempfile.mkdtemp(prefix="allot-metrics-")
    except OSError as exc:
        where = configured or "a temporary directory"
        raise ConfigurationError(
            "PROMETHEUS_MULTIPROC_DIR: the workers' metrics need a writable directory, "
            f"and {where} is not writable ({exc.strerror or exc}); "
            f"set PROMETHEUS_MULTIPROC_DIR to a writable path and {_WRITABLE_HINT}"
        ) from None
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = fresh
    atexit.register(shutil.rmtree, fresh, ignore_errors=True)


async def _check_database(settings: Settings) -> None:
    """Outside embedded mode serve does not migrate: refuse a database it could not use."""
    from app.db import Database
    from app.migrations_runner import at_head

    database = Database(settings)
    try:
        async with database.engine.connect() as conn:
            migrated = await conn.run_sync(at_head)
    except Exception as exc:  # any driver error: the URL names no usable database
        raise ConfigurationError("ALLOT_DATABASE_URL: the database cannot be reached") from exc
    finally:
        await database.dispose()
    if not migrated:
        raise ConfigurationError(
            "ALLOT_DATABASE_URL: the database is not migrated to head; run `allot db upgrade`"
        )


def _serve(args: argparse.Namespace) -> None:
    _metrics_dir_for_workers(args.workers)
    import uvicorn
    from sqlalchemy.exc import OperationalError

    from app import http_limits
    from app.db import Database
    from app.migrations_runner import upgrade

    settings = _settings()
    # Fail fast, in the parent, on settings the workers would refuse anyway.
    from app.main import create_app

    application = create_app(settings)
    asyncio.run(application.state.rate_limiter.check_storage())
    if settings.is_embedded:

        async def migrate() -> None:
            database = Database(settings)
            try:
                await upgrade(database.engine)
            except OperationalError as exc:  # SQLite cannot open or write its file
                raise ConfigurationError(
                    "ALLOT_DATABASE_URL: the embedded SQLite database cannot be written "
                    f"({exc.orig}); mount a writable volume where it lives, or use PostgreSQL"
                ) from None
            finally:
                await database.dispose()

        asyncio.run(migrate())
    else:
        asyncio.run(_check_database(settings))
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        http=http_limits.PROTOCOL,  # bounds on the request line and headers
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_config=None,
        access_log=False,  # the access log is ours (app.middleware), one JSON line per request
        proxy_headers=args.proxy_headers,
        timeout_graceful_shutdown=args.graceful_timeout,
    )


def _db_upgrade(_args: argparse.Namespace) -> None:
    from app.db import Database
    from app.migrations_runner import upgrade

    async def run() -> None:
        database = Database(_settings())
        try:
            await upgrade(database.engine)
        finally:
            await database.dispose()

    asyncio.run(run())
    print("database at head")


def _db_check(_args: argparse.Namespace) -> None:
    from app.engines import make_engine
    from app.services.integrity import differences

    async def run() -> list[str]:
        settings = _settings()
        engine = make_engine(settings.database_url, settings)
        try:
            async with engine.connect() as conn:
                return await differences(conn)
        finally:
            await engine.dispose()

    found = asyncio.run(run())
    if found:
        print("\n".join(found))
        raise _Failed("the database breaks rules allot relies on (listed above)")
    print("every inventory's usage equals its allocations; every tree is whole")


def _import_placement(args: argparse.Namespace) -> None:
    from pathlib import Path

    from app.placement_import.copier import Owners
    from app.placement_import.importer import import_placement
    from app.placement_import.progress import Progress

    owners = Owners.from_file(Path(args.owners)) if args.owners else None
    started = time.monotonic()
    report = asyncio.run(
        import_placement(
            _settings(), args.source_url, replace=args.replace, owners=owners,
            progress=Progress.to(sys.stderr),
        )
    )  # fmt: skip
    print("\n".join(report.lines()))
    print(f"imported in {time.monotonic() - started:.1f} s")


def _verify_import(args: argparse.Namespace) -> None:
    from app.placement_import.verify import verify_import

    differences = asyncio.run(verify_import(_settings(), args.source_url))
    if differences:
        print("\n".join(differences))
        raise _Failed(f"{len(differences)} difference lines between Placement and allot")
    print("allot holds what Placement holds")


class _Failed(Exception):
    """The command ran and found a problem: exit 1 with this line."""


def _parse_ttl(value: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if value[-1:] in units:
        return int(value[:-1]) * units[value[-1]]
    return int(value)


def _token(args: argparse.Namespace) -> None:
    from app.authz.jwt_tokens import JwtAuthenticator

    authenticator = JwtAuthenticator(_settings())
    roles = [r.strip() for r in args.roles.split(",") if r.strip()]
    print(
        authenticator.mint(
            user=args.user,
            project=args.project,
            roles=roles,
            system=args.system,
            ttl_seconds=_parse_ttl(args.ttl),
        )
    )


def _policy_check(args: argparse.Namespace) -> None:
    from app.authz.explain import explain

    print(explain(_settings(), args.token, args.method, args.path, owner=args.owner))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="allot", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes (default ALLOT_WORKERS or 1)",
    )
    serve.add_argument(
        "--proxy-headers",
        action="store_true",
        help="trust X-Forwarded-For from the proxy",
    )
    serve.add_argument("--graceful-timeout", type=int, default=30)
    serve.set_defaults(func=_serve)

    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="apply migrations up to head").set_defaults(func=_db_upgrade)
    db_sub.add_parser(
        "check", help="verify usage counts and provider trees against the rows"
    ).set_defaults(func=_db_check)
    imports = db_sub.add_parser(
        "import-placement", help="copy a Placement database into this (empty) allot database"
    )
    imports.add_argument("source_url", metavar="SOURCE_URL", help="Placement's database URL")
    imports.add_argument("--replace", action="store_true", help="replace a non-empty target")
    imports.add_argument(
        "--owners", metavar="FILE", help='JSON {"<provider uuid>": "<owner project id>"}'
    )
    imports.set_defaults(func=_import_placement)
    verify = db_sub.add_parser(
        "verify-import", help="compare this allot database with a Placement database"
    )
    verify.add_argument("source_url", metavar="SOURCE_URL", help="Placement's database URL")
    verify.set_defaults(func=_verify_import)

    token = sub.add_parser("token", help="mint a development token signed with the local key")
    token.add_argument("--user", default="dev-user")
    token.add_argument("--project", default=None)
    token.add_argument("--roles", default="admin")
    token.add_argument("--system", action="store_true", help="system scope (system: all)")
    token.add_argument("--ttl", default="1h", help="lifetime: 3600, 30m, 1h, 7d")
    token.set_defaults(func=_token)

    policy = sub.add_parser("policy", help="inspect the access policy")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True)
    check = policy_sub.add_parser("check", help="explain which rule allows or denies a request")
    check.add_argument("--token", required=True)
    check.add_argument("--owner", default=None, help="owner project of the object, if any")
    check.add_argument("method")
    check.add_argument("path")
    check.set_defaults(func=_policy_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "workers", 0) is None:
        import os

        args.workers = int(os.environ.get("ALLOT_WORKERS", "1"))
    try:
        args.func(args)
    except ConfigurationError as exc:
        print(f"allot: configuration error: {exc}", file=sys.stderr)
        return 2
    except _Failed as exc:
        print(f"allot: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        refusal = _refusal(exc)
        if refusal is None:
            raise
        print("\n".join(f"allot: {line}" for line in refusal), file=sys.stderr)
        return 1
    return 0


def _refusal(exc: Exception) -> list[str] | None:
    """An import's refusal, as lines for the operator; None for anything else."""
    if "app.placement_import" not in sys.modules:
        return None
    from app.placement_import.importer import ImportRefused
    from app.placement_import.source import SourceError

    if isinstance(exc, ImportRefused):
        return exc.lines
    if isinstance(exc, SourceError):
        return [str(exc)]
    return None


if __name__ == "__main__":
    sys.exit(main())
