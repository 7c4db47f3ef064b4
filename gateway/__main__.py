import uvicorn

from gateway.app import create_app
from gateway.settings import GatewaySettings
from idlock import telemetry
from idlock.launch import checked_settings

settings = checked_settings("gateway", GatewaySettings)
telemetry.setup("gateway")
print(f"gateway listening on http://{settings.host}:{settings.port}", flush=True)
uvicorn.run(
    create_app(settings, freeze_heap=True),
    host=settings.host,
    port=settings.port,
    log_level="warning",
    proxy_headers=False,  # X-Forwarded-For is read by gateway.deps.client_ip, from trusted proxies only
)
