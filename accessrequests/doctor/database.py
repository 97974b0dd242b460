"""Checks of the database: reachable, and at the code's migrations."""

from __future__ import annotations

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor

from accessrequests.core.wording import counted

from .registry import Context, Result, check, fail, ok, warn


def _where() -> str:
    """The database, never its password."""
    db = settings.DATABASES[DEFAULT_DB_ALIAS]
    if str(db["ENGINE"]).endswith("sqlite3"):
        return f"SQLite {db['NAME']}"
    host = db.get("HOST") or "localhost"
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"PostgreSQL {db['NAME']} on {host}{port}"


@check("database", "the database answers")
def database(ctx: Context) -> Result:
    connection = connections[DEFAULT_DB_ALIAS]
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return fail(
            f"{_where()} cannot be reached: {exc.__class__.__name__}{': ' + reason if reason else ''}",
            fix="check DATABASE_URL (host, port, user, password, database name) and that the database server "
            "is running and lets this machine in",
        )
    if connection.vendor == "sqlite" and not settings.DEBUG:
        return warn(
            f"{_where()}: the demo's embedded database, with DEBUG off",
            fix="set DATABASE_URL to a PostgreSQL database (README, Deploy with compose)",
        )
    return ok(_where())


@check("database.migrations", "every migration of this code is applied, none unknown", needs=("database",))
def migrations(ctx: Context) -> Result:
    executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
    graph = executor.loader.graph
    plan = executor.migration_plan(graph.leaf_nodes())
    if plan:
        first = plan[0][0]
        return fail(
            f"{counted(len(plan), 'migration')} not applied, the first {first.app_label}.{first.name}",
            fix="run python manage.py migrate (before the new version's web, worker and beat start)",
            unapplied=[f"{m.app_label}.{m.name}" for m, _ in plan],
        )
    unknown = sorted(
        f"{app}.{name}" for app, name in executor.loader.applied_migrations if (app, name) not in graph.nodes
    )
    if unknown:
        return warn(
            f"the database has {counted(len(unknown), 'migration')} this code does not know ({unknown[0]}…): "
            "a newer Gatehouse ran against it",
            fix="run the Gatehouse version that matches the database, or restore the database of this version",
            unknown=unknown,
        )
    newest = max((name for app, name in graph.leaf_nodes() if app == "accessrequests"), default="")
    return ok(f"every migration applied (accessrequests at {newest})")
