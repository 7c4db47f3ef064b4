"""Users, API keys and the audit log, over the gateway's database."""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import re
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from gateway import auth
from gateway.errors import ApiError, unauthenticated
from gateway.models import SCHEMA_VERSION, UPGRADES, ApiKey, AuditEntry, Base, LoginStrike, User, utcnow
from gateway.schemas import EMAIL_PATTERN
from gateway.settings import GatewaySettings
from idlock.db import Database
from idlock.text import strip_control

_EMAIL = re.compile(EMAIL_PATTERN)
#: audit details that repeat a resource's content: dropped when the resource is erased
AUDIT_CONTENT = frozenset({"name", "description", "prompt", "comment"})


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of a request."""

    user_id: str
    email: str
    is_admin: bool
    #: "jwt" or "api_key:<key id>"
    via: str
    name: str = ""


def normalize_email(email: str) -> str:
    email = (email or "").strip().lower()
    if len(email) > 320 or not _EMAIL.match(email):
        raise ApiError(400, "invalid_argument", "email must be a valid address like name@example.com")
    return email


class UserStore:
    def __init__(self, db: Database, settings: GatewaySettings, jwt_secret: str) -> None:
        self.db = db
        self.settings = settings
        self._secret = jwt_secret

    async def migrate(self) -> None:
        await self.db.migrate(Base.metadata, version=SCHEMA_VERSION, upgrades=UPGRADES)

    @staticmethod
    def _is_admin(user: Any) -> bool:
        return bool(user.is_admin)

    # ---- users ---------------------------------------------------------------------------------------------

    async def register(
        self, email: str, password: str, *, name: str = "", client_ip: str = "", request_id: str = ""
    ) -> Principal:
        """A new user, never an administrator (operators make those: `create_admin`). Duplicate email -> 409."""
        if not self.settings.allow_registration:
            raise ApiError(403, "permission_denied", "registration is closed on this gateway")
        email = normalize_email(email)
        auth.check_password_strength(password, self.settings.password_min_length, email)
        password_hash = auth.hash_password(password)
        user_id = "usr_" + uuid.uuid4().hex
        try:
            async with self.db.session() as s:
                user = User(
                    id=user_id,
                    email=email,
                    name=strip_control(name).strip(),
                    password_hash=password_hash,
                    is_admin=False,
                )
                s.add(user)
                await s.flush()
                s.add(
                    self._audit(user_id, "register", "user", user_id, client_ip, request_id, {"email": email})
                )
        except IntegrityError as exc:
            raise ApiError(409, "already_exists", f"a user with email {email} already exists") from exc
        return Principal(
            user_id=user.id, email=email, is_admin=self._is_admin(user), via="register", name=user.name
        )

    async def login(
        self, email: str, password: str, *, client_ip: str = "", request_id: str = ""
    ) -> tuple[str, int]:
        """(token, expires_at) for valid credentials, else 401 (the same answer for unknown email and wrong password)."""
        try:
            email = normalize_email(email)
        except ApiError:
            email = ""
        for attempt in range(2):  # two first failures for one unknown email race to make its row: once more
            try:
                user, refused = await self._sign_in(email, password, client_ip, request_id)
                break
            except IntegrityError:
                if attempt:
                    raise
        if refused is not None:  # raised after the session committed the count and the audit rows
            raise refused
        return auth.issue_token(
            user.id, secret=self._secret, expiry_s=self.settings.jwt_expiry_s, issuer=self.settings.jwt_issuer
        )

    async def _sign_in(
        self, email: str, password: str, client_ip: str, request_id: str
    ) -> tuple[User | None, ApiError | None]:
        """One attempt: (the user, None) for valid credentials, else (the user or None, the refusal); the counts,
        locks and audit rows are committed either way."""
        refused: ApiError | None = None
        async with self.db.session() as s:
            user = (
                (await s.execute(select(User).where(User.email == email))).scalar_one_or_none()
                if email
                else None
            )
            now = utcnow()
            # an email no account has is counted and locked the same way: a 429 is no sign that it exists
            counter = user if user is not None or not email else await self._strikes(s, email, now)
            until = _aware(counter.locked_until) if counter is not None and counter.locked_until else None
            locked = until is not None and until > now
            ok = not locked and auth.verify_password(user.password_hash if user else None, password)
            if locked:  # the same answer whatever the password: a lock is no oracle
                wait = max(1, math.ceil((until - now).total_seconds()))
                if user is not None:
                    s.add(self._audit(user.id, "login_locked", "user", user.id, client_ip, request_id, {}))
                refused = ApiError(
                    429,
                    "account_locked",
                    f"too many failed sign-ins for this account: retry after {wait} s",
                    headers={"Retry-After": str(wait)},
                )
            elif not ok or user is None or user.disabled:
                if counter is not None:
                    counter.failed_logins = (counter.failed_logins or 0) + 1
                    over = counter.failed_logins - self.settings.login_free_failures
                    if over >= 0:
                        lock_s = min(self.settings.login_lock_max_s, 2**over)
                        counter.locked_until = now + dt.timedelta(seconds=lock_s)
                if user is not None:
                    s.add(
                        self._audit(
                            user.id, "login_failed", "user", user.id, client_ip, request_id,
                            {"failed_in_a_row": user.failed_logins},
                        )
                    )  # fmt: skip
                refused = unauthenticated("invalid email or password")
            else:
                user.failed_logins, user.locked_until = 0, None
                if auth.needs_rehash(user.password_hash):
                    user.password_hash = auth.hash_password(password)
                s.add(self._audit(user.id, "login", "user", user.id, client_ip, request_id, {}))
        return user, refused

    @staticmethod
    async def _strikes(s: Any, email: str, now: dt.datetime) -> LoginStrike:
        key = hashlib.sha256(email.encode()).hexdigest()
        row = await s.get(LoginStrike, key)
        if row is None:
            await s.execute(delete(LoginStrike).where(LoginStrike.updated_at < now - dt.timedelta(days=1)))
            row = LoginStrike(email_sha256=key, failed_logins=0, updated_at=now)
            s.add(row)
        row.updated_at = now
        return row

    async def create_admin(self, email: str, password: str, *, name: str = "") -> tuple[Principal, bool]:
        """An operator's command (`idlock admin create`): a new administrator, or an existing user made one
        (the password is then left as it is). Returns (principal, created). Never reachable over HTTP."""
        email = normalize_email(email)
        async with self.db.session() as s:
            user = (await s.execute(select(User).where(User.email == email))).scalar_one_or_none()
            created = user is None
            if created:
                auth.check_password_strength(password, self.settings.password_min_length, email)
                user = User(
                    id="usr_" + uuid.uuid4().hex,
                    email=email,
                    name=strip_control(name).strip(),
                    password_hash=auth.hash_password(password),
                    is_admin=True,
                )
                s.add(user)
                await s.flush()
            else:
                user.is_admin = True
            s.add(
                self._audit(
                    None, "admin_create", "user", user.id, "", "", {"by": "operator", "created": created}
                )
            )
        return Principal(user.id, email, True, "operator", user.name), created

    async def _principal(self, user_id: str, via: str) -> Principal:
        # every request runs this: a Core read, without the ORM's session (about half the cost)
        users = User.__table__
        async with self.db.connect(read_only=True) as c:
            user = (await c.execute(select(users).where(users.c.id == user_id))).first()
        if user is None or user.disabled:
            raise unauthenticated("the account of this credential no longer exists or is disabled")
        return Principal(
            user_id=user.id, email=user.email, is_admin=self._is_admin(user), via=via, name=user.name
        )

    async def from_token(self, token: str) -> Principal:
        claims = auth.decode_token(token, secret=self._secret, issuer=self.settings.jwt_issuer)
        return await self._principal(claims.user_id, "jwt")

    # ---- API keys ------------------------------------------------------------------------------------------

    async def create_api_key(
        self, principal: Principal, name: str, *, client_ip: str = "", request_id: str = ""
    ) -> tuple[ApiKey, str]:
        """(row, plaintext key); the plaintext is never stored."""
        new = auth.new_api_key()
        async with self.db.session() as s:
            row = ApiKey(id=new.key_id, user_id=principal.user_id, name=name, secret_hash=new.secret_hash)
            s.add(row)
            s.add(
                self._audit(
                    principal.user_id, "api_key_create", "api_key", new.key_id, client_ip, request_id, {}
                )
            )
        return row, new.plaintext

    async def list_api_keys(self, principal: Principal) -> list[ApiKey]:
        async with self.db.session() as s:
            rows = await s.execute(
                select(ApiKey).where(ApiKey.user_id == principal.user_id).order_by(ApiKey.created_at.desc())
            )
            return list(rows.scalars())

    async def revoke_api_key(
        self, principal: Principal, key_id: str, *, client_ip: str = "", request_id: str = ""
    ) -> None:
        async with self.db.session() as s:
            row = await s.get(ApiKey, key_id)
            if row is None or row.user_id != principal.user_id or row.revoked_at is not None:
                raise ApiError(404, "not_found", f"API key {key_id} not found")
            row.revoked_at = utcnow()
            s.add(
                self._audit(principal.user_id, "api_key_revoke", "api_key", key_id, client_ip, request_id, {})
            )

    async def from_api_key(self, plaintext: str) -> Principal:
        key_id, secret = auth.parse_api_key(plaintext)
        async with self.db.session() as s:
            row = await s.get(ApiKey, key_id)
            if (
                row is None
                or row.revoked_at is not None
                or not auth.key_secret_matches(secret, row.secret_hash)
            ):
                raise unauthenticated("invalid or revoked API key")
            now = utcnow()
            last = row.last_used_at
            if last is None or (now - _aware(last)) > dt.timedelta(minutes=1):
                row.last_used_at = now
            user_id = row.user_id
        return await self._principal(user_id, f"api_key:{key_id}")

    # ---- audit ---------------------------------------------------------------------------------------------

    @staticmethod
    def _audit_values(
        user_id: str | None,
        action: str,
        resource_type: str,
        resource_id: str,
        client_ip: str,
        request_id: str,
        details: dict[str, Any],
    ) -> dict[str, Any]:
        """An audit log row's values."""
        return {
            "user_id": user_id,
            "action": action,
            "resource_type": resource_type,
            "resource_id": resource_id,
            "client_ip": client_ip or "",
            "request_id": request_id or "",
            "details": details,
        }

    def _audit(self, *args: Any) -> AuditEntry:
        """The audit row for a change made in an ORM session (`_audit_values`' arguments)."""
        return AuditEntry(**self._audit_values(*args))

    async def audit(
        self,
        user_id: str | None,
        action: str,
        resource_type: str = "",
        resource_id: str = "",
        *,
        client_ip: str = "",
        request_id: str = "",
        **details: Any,
    ) -> None:
        values = self._audit_values(
            user_id, action, resource_type, resource_id, client_ip, request_id, details
        )
        # a Core insert: the requests that write the log skip the ORM's session
        async with self.db.connect() as c:
            await c.execute(AuditEntry.__table__.insert().values(**values))

    async def forget_content(self, resource_type: str, resource_id: str) -> int:
        """An erased resource's audit rows keep who, what and when, and lose what they said of its content
        (a character's name, a description); returns how many rows changed."""
        changed = 0
        async with self.db.session() as s:
            rows = (
                await s.execute(
                    select(AuditEntry).where(
                        AuditEntry.resource_type == resource_type, AuditEntry.resource_id == resource_id
                    )
                )
            ).scalars()
            for row in rows:
                kept = {k: v for k, v in (row.details or {}).items() if k not in AUDIT_CONTENT}
                if kept != row.details:
                    row.details = kept
                    changed += 1
        await self.db.scrub()
        return changed

    async def audit_entries(self, *, user_id: str | None = None, limit: int = 100) -> list[AuditEntry]:
        async with self.db.session() as s:
            q = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
            if user_id is not None:
                q = q.where(AuditEntry.user_id == user_id)
            return list((await s.execute(q)).scalars())


def _aware(t: dt.datetime) -> dt.datetime:
    # SQLite returns naive datetimes for timezone-aware columns
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)
