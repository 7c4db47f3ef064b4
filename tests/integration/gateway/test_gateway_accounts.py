"""Account hardening over HTTP: the password policy, account lock-out after failed sign-ins, API keys that cannot
manage API keys, the client address (X-Forwarded-For believed from trusted proxies only), security headers on every
answer, and `idlock admin create` as the only way to make an administrator."""

from __future__ import annotations

import os
from pathlib import Path
from unittest import mock

import pytest
from typer.testing import CliRunner

from gateway.cli import admin_app
from tests.integration.gateway.test_gateway_api import PASSWORD, Mesh, assert_error, running


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("password12", "most common passwords"),
        ("Password12", "most common passwords"),
        ("aaaaaaaaaaaa", "fewer than 5 different"),
        ("abababababab", "fewer than 5 different"),
        ("mallory@example.com", "email"),
        ("mallory-secret-1", "email"),
        ("short", "at least 10"),
    ],
)
async def test_weak_passwords_are_refused_with_the_reason(
    mesh: Mesh, tmp_path: Path, password: str, why: str
) -> None:
    async with running(mesh, tmp_path) as api:
        r = await api.client.post(
            "/auth/register", json={"email": "mallory@example.com", "password": password}
        )
        assert_error(r, 400, "weak_password", why)
        assert password not in r.text  # the answer never echoes the password


async def test_failed_sign_ins_lock_the_account_with_backoff(mesh: Mesh, tmp_path: Path) -> None:
    async with running(mesh, tmp_path, login_free_failures=3, auth_rate_limit_burst=100) as api:
        await api.user("victim@example.com")
        wrong = {"email": "victim@example.com", "password": "not the password at all"}
        codes = [(await api.client.post("/auth/login", json=wrong)).status_code for _ in range(3)]
        assert codes == [401, 401, 401]
        # the third failure in a row locks for 1 s; while locked, even the right password is refused the same way
        right = {"email": "victim@example.com", "password": PASSWORD}
        locked = await api.client.post("/auth/login", json=right)
        assert_error(locked, 429, "account_locked", "retry after")
        assert int(locked.headers["retry-after"]) >= 1
        again = await api.client.post("/auth/login", json=wrong)
        assert again.status_code == 429 and again.json()["error"]["code"] == "account_locked"
        actions = [e.action for e in await api.audit()]
        assert actions.count("login_failed") == 3 and actions.count("login_locked") == 2
        # after the lock, the right password works and the count starts again
        import asyncio

        await asyncio.sleep(float(locked.headers["retry-after"]) + 0.2)
        assert (await api.client.post("/auth/login", json=right)).status_code == 200
        assert (await api.client.post("/auth/login", json=wrong)).status_code == 401


async def test_a_lock_out_tells_nothing_about_whether_an_account_exists(mesh: Mesh, tmp_path: Path) -> None:
    async with running(mesh, tmp_path, login_free_failures=2, auth_rate_limit_burst=100) as api:
        await api.user("real@example.com")
        answers = {}
        for email in ("real@example.com", "nobody@example.com"):
            wrong = {"email": email, "password": "not the password at all"}
            replies = [await api.client.post("/auth/login", json=wrong) for _ in range(3)]
            answers[email] = [
                (r.status_code, r.json()["error"]["code"], r.json()["error"]["message"]) for r in replies
            ]
        # the same codes and messages for an account and for no account: 401, 401, then the lock
        assert answers["real@example.com"] == answers["nobody@example.com"]
        assert [a[:2] for a in answers["nobody@example.com"]] == [
            (401, "unauthenticated"),
            (401, "unauthenticated"),
            (429, "account_locked"),
        ]


async def test_api_keys_cannot_manage_api_keys(mesh: Mesh, tmp_path: Path) -> None:
    async with running(mesh, tmp_path) as api:
        jwt = await api.user("svc@example.com")
        made = await api.client.post("/auth/api-keys", headers=jwt, json={"name": "ci"})
        assert made.status_code == 201 and made.headers["cache-control"] == "no-store"
        key = {"X-API-Key": made.json()["api_key"]}
        assert (await api.client.get("/api/v1/characters", headers=key)).status_code == 200  # the key works
        assert_error(
            await api.client.post("/auth/api-keys", headers=key, json={}),
            403,
            "permission_denied",
            "API keys",
        )
        assert_error(await api.client.get("/auth/api-keys", headers=key), 403, "permission_denied")
        key_id = made.json()["api_key_id"]
        assert_error(
            await api.client.delete(f"/auth/api-keys/{key_id}", headers=key), 403, "permission_denied"
        )
        assert (await api.client.get("/auth/api-keys", headers=jwt)).status_code == 200


async def test_forwarded_for_is_believed_from_trusted_proxies_only(mesh: Mesh, tmp_path: Path) -> None:
    forged = {"X-Forwarded-For": "203.0.113.7"}
    # the test client's peer address is 127.0.0.1 (httpx's ASGI transport)
    async with running(mesh, tmp_path, auth_rate_limit_burst=2, auth_rate_limit_per_minute=1) as api:
        creds = {"email": "x@example.com", "password": "wrong password here"}
        codes = []
        for i in range(3):  # a new forged address per attempt does not escape the per-address limit
            r = await api.client.post(
                "/auth/login", json=creds, headers={"X-Forwarded-For": f"198.51.100.{i}"}
            )
            codes.append(r.status_code)
        assert codes == [401, 401, 429]
    async with running(mesh, tmp_path / "proxied", trusted_proxies=["127.0.0.0/8"]) as api:
        r = await api.client.post(
            "/auth/register",
            json={"email": "proxied@example.com", "password": PASSWORD},
            headers={"X-Forwarded-For": "203.0.113.7, 127.0.0.5"},
        )
        assert r.status_code == 201
        entry = (await api.audit("register"))[0]
        assert entry.client_ip == "203.0.113.7"  # the nearest hop that is not a trusted proxy
    async with running(
        mesh, tmp_path / "direct"
    ) as api:  # the audit log records the peer, not a forged address
        await api.client.post(
            "/auth/register", json={"email": "d@example.com", "password": PASSWORD}, headers=forged
        )
        assert (await api.audit("register"))[0].client_ip != "203.0.113.7"


async def test_security_headers_on_every_answer(mesh: Mesh, tmp_path: Path) -> None:
    async with running(mesh, tmp_path) as api:
        for path in ("/healthz", "/api/v1/characters", "/api/v1/nope", "/openapi.json"):
            r = await api.client.get(path)
            assert r.headers["x-content-type-options"] == "nosniff", path
            assert r.headers["x-frame-options"] == "DENY" and r.headers["referrer-policy"] == "no-referrer"
            assert "frame-ancestors 'none'" in r.headers["content-security-policy"], path
        page = await api.client.get("/")
        assert "script-src 'self'" in page.headers["content-security-policy"]  # the studio keeps its own


def test_idlock_admin_create_is_the_way_to_an_administrator(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {
        "IDLOCK_DATA_DIR": str(tmp_path),
        "IDLOCK_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'gw.db'}",
    }
    with mock.patch.dict(os.environ, env):
        made = runner.invoke(admin_app, ["create", "--email", "Ops@Example.com", "--generate-password"])
        assert made.exit_code == 0, made.output
        assert "created administrator ops@example.com" in made.output and "shown once" in made.output
        weak = runner.invoke(
            admin_app, ["create", "--email", "b@example.com", "--password-stdin"], input="password12\n"
        )
        assert weak.exit_code == 2 and "most common passwords" in weak.output
        again = runner.invoke(
            admin_app, ["create", "--email", "ops@example.com", "--password-stdin"], input="x\n"
        )
        assert again.exit_code == 0 and "made an administrator of existing user" in again.output
