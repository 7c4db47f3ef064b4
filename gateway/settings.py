"""Settings of the REST gateway (env prefix IDLOCK_GATEWAY_)."""

from __future__ import annotations

import ipaddress
from typing import Annotated, ClassVar, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from idlock.settings import DEFAULT_PORTS, IdlockSettings

MIB = 1024 * 1024


def _split_csv(v: object) -> object:
    """Lists come from the environment as comma separated values."""
    if isinstance(v, str):
        return [item.strip() for item in v.split(",") if item.strip()]
    return v


class GatewaySettings(IdlockSettings):
    model_config = SettingsConfigDict(env_prefix="IDLOCK_GATEWAY_")
    component: ClassVar[str] = "gateway"

    host: str = Field("127.0.0.1", description="Address the HTTP server binds.")
    port: int = Field(DEFAULT_PORTS["gateway"], ge=0, le=65535, description="HTTP port of the REST gateway.")
    health_timeout_s: float = Field(
        2.0, gt=0, description="Deadline of each component health check (seconds)."
    )

    # auth
    jwt_secret: SecretStr | None = Field(
        None,
        description=(
            "HMAC secret signing the gateway's JWTs (HS256, at least 32 characters). Empty: a development "
            "secret is generated once per data directory and kept in <data_dir>/gateway-jwt-secret (a warning "
            "is logged)."
        ),
    )
    jwt_expiry_s: int = Field(
        3600, ge=60, le=30 * 24 * 3600, description="Lifetime of an access token (seconds)."
    )
    jwt_issuer: str = Field(
        "idlock-gateway", min_length=1, description="`iss` claim written and required in JWTs."
    )
    password_min_length: int = Field(
        10, ge=8, le=128, description="Shortest password accepted at registration."
    )
    login_free_failures: int = Field(
        5,
        ge=1,
        le=100,
        description=(
            "Failed sign-ins an account may have in a row before it is locked for a while (1 s, doubling per "
            "further failure, at most login_lock_max_s); any sign-in while locked answers 429."
        ),
    )
    login_lock_max_s: int = Field(
        900, ge=1, le=86400, description="Longest account lock after failed sign-ins."
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "Comma separated networks (CIDR) of reverse proxies whose X-Forwarded-For is believed; empty: the "
            "peer address is the client, whatever the headers say."
        ),
    )
    allow_registration: bool = Field(True, description="Accept new users on POST /auth/register.")

    # uploads
    max_upload_file_bytes: int = Field(
        10 * MIB,
        ge=1024,
        description="Largest single uploaded file (bytes); larger files are refused with 413.",
    )
    max_upload_total_bytes: int = Field(
        30 * MIB,
        ge=1024,
        description="Largest total of the files of one request (bytes); more is refused with 413.",
    )
    max_image_pixels: int = Field(
        40_000_000,
        ge=1,
        description="Largest image (width x height) accepted; larger ones are refused as bombs.",
    )
    max_reference_images: int = Field(5, ge=1, le=20, description="Most reference images per character.")
    jpeg_quality: int = Field(
        92, ge=50, le=100, description="Quality of JPEG uploads re-encoded without EXIF."
    )
    max_uploads_per_user: int = Field(
        200,
        ge=1,
        description="Most stored uploads (pose images) per user; more are refused with 409 quota_exceeded.",
    )
    upload_ttl_s: int = Field(
        7 * 24 * 3600,
        ge=3600,
        description="Uploads older than this are deleted (seconds): a pose image serves the scenes made soon after.",
    )
    upload_sweep_interval_s: float = Field(
        3600.0, gt=0, description="How often each gateway deletes expired uploads (seconds)."
    )

    # pose images
    pose_fetch_timeout_s: float = Field(
        10.0, gt=0, description="Time limit to download a pose_image_url (seconds)."
    )
    pose_max_bytes: int = Field(
        10 * MIB, ge=1024, description="Largest pose image downloaded from a URL (bytes)."
    )
    pose_max_redirects: int = Field(
        3, ge=0, le=10, description="Redirects followed (each re-checked) for a pose URL."
    )

    # rate limits (token buckets per user, per client IP on /auth and on every write)
    rate_limit_store: Literal["database", "process"] = Field(
        "database",
        description=(
            "Where the buckets live: database (shared by every gateway replica, one UPDATE per request) or "
            "process (each replica counts alone)."
        ),
    )
    write_ip_rate_limit_per_minute: float = Field(
        300.0,
        gt=0,
        description="Sustained write requests (POST, PUT, PATCH, DELETE) per client IP per minute.",
    )
    write_ip_rate_limit_burst: int = Field(
        100, ge=1, description="Write requests a client IP may make at once before being limited."
    )
    rate_limit_per_minute: float = Field(
        120.0, gt=0, description="Sustained API requests per user per minute."
    )
    rate_limit_burst: int = Field(
        30, ge=1, description="Requests a user may make at once before being limited."
    )
    generate_rate_limit_per_minute: float = Field(
        20.0, gt=0, description="Sustained generation submissions per user per minute."
    )
    generate_rate_limit_burst: int = Field(
        5, ge=1, description="Generation submissions a user may make at once."
    )
    auth_rate_limit_per_minute: float = Field(
        20.0, gt=0, description="Sustained /auth requests per client IP per minute."
    )
    auth_rate_limit_burst: int = Field(10, ge=1, description="/auth requests a client IP may make at once.")

    # mesh calls
    rpc_timeout_s: float = Field(
        30.0, gt=0, description="Deadline of a gateway call into the mesh (seconds)."
    )
    grpc_max_message_mb: int = Field(
        32, ge=1, le=512, description="Largest gRPC message the gateway sends or receives (MiB)."
    )
    sse_max_s: float = Field(
        3600.0,
        gt=0,
        description="Longest a job event stream (SSE) stays open before the client must reconnect.",
    )
    sse_keepalive_s: float = Field(15.0, gt=0, description="Interval of SSE keep-alive comments while idle.")

    # downloads
    public_url: str = Field(
        "",
        max_length=500,
        pattern=r"^(https?://[^\s/?#]+(/[^\s?#]*)?)?$",
        description=(
            "Base URL clients reach the gateway at (e.g. https://idlock.example.com), used in download links of "
            "the local object store. Empty: the address each request came to."
        ),
    )
    object_url_key: SecretStr | None = Field(
        None,
        description=(
            "HMAC key signing the local object store's download links (at least 32 characters). Empty: derived "
            "from the JWT secret."
        ),
    )
    object_url_ttl_s: int = Field(
        3600,
        ge=60,
        le=7 * 24 * 3600,
        description="Lifetime of a download link the gateway signs (seconds).",
    )
    s3_presigned_links: bool = Field(
        False,
        description=(
            "On S3, hand out S3's own presigned URLs: no download load on the gateway, but a link works until it "
            "expires (IDLOCK_STORAGE_PRESIGN_TTL_S) even after its character is frozen or erased. False: the "
            "gateway serves S3 objects at its own signed links, checking owner and freeze on every download."
        ),
    )

    # HTTP
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma separated origins allowed by CORS; empty disables CORS."
    )
    page_size_max: int = Field(
        100,
        ge=1,
        le=1000,
        description="Largest page a list endpoint returns (a larger page_size gives this many).",
    )

    @field_validator("trusted_proxies", "cors_origins", mode="before")
    @classmethod
    def _csv(cls, v: object) -> object:
        return _split_csv(v)

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        for net in v:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError as exc:
                raise ValueError(f"IDLOCK_GATEWAY_TRUSTED_PROXIES: {net!r} is not a network ({exc})") from exc
        return v

    @field_validator("jwt_secret", "object_url_key")
    @classmethod
    def _strong_secret(cls, v: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if v is None or not v.get_secret_value():
            return None
        if len(v.get_secret_value()) < 32:
            raise ValueError(f"IDLOCK_GATEWAY_{info.field_name.upper()} must be at least 32 characters")
        return v
