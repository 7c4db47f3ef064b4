"""`idlock admin ...`: operator commands of the gateway, run on a machine that reaches its database. Administrators
are made here and only here: registration over HTTP never makes one."""

from __future__ import annotations

import asyncio
import secrets
import sys
from typing import Annotated

import typer

admin_app = typer.Typer(help="Gateway administration (operators only).", no_args_is_help=True)


@admin_app.callback()
def _admin() -> None:
    """Gateway administration (operators only)."""


async def _create(email: str, password: str, name: str):
    from gateway.settings import GatewaySettings
    from gateway.users import UserStore
    from idlock.db import Database
    from idlock.settings import DatabaseSettings, PathsSettings

    db = Database.open(DatabaseSettings(), service="gateway", data_dir=PathsSettings().data_dir)
    try:
        users = UserStore(db, GatewaySettings(), jwt_secret="")  # no token is issued here
        await users.migrate()
        return await users.create_admin(email, password, name=name)
    finally:
        await db.close()


@admin_app.command("create")
def create(
    email: Annotated[
        str, typer.Option("--email", help="The administrator's email (an existing user is promoted).")
    ],
    name: Annotated[str, typer.Option("--name", help="How they are called.")] = "",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input (one line).")
    ] = False,
    generate: Annotated[
        bool, typer.Option("--generate-password", help="Make a random password and print it once.")
    ] = False,
) -> None:
    """Create an administrator in the gateway's database (IDLOCK_DATABASE_URL, or the data dir's SQLite file)."""
    from gateway.errors import ApiError

    if generate:
        password = secrets.token_urlsafe(18)
    elif password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        principal, created = asyncio.run(_create(email, password, name))
    except ApiError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from exc
    what = "created administrator" if created else "made an administrator of existing user"
    typer.echo(f"{what} {principal.email} ({principal.user_id})")
    if generate and created:
        typer.echo(f"password (shown once): {password}")
