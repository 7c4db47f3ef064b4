"""A local fake of Groq's OpenAI-compatible chat completions API, for the real `groq` client (base_url=...).

    with FakeGroqServer() as fake:
        fake.reply("formatted prompt")          # every call answers this text
        fake.script([(429, None), (200, "ok")]) # or one entry per call, then the default
        client = groq.Groq(api_key="test", base_url=fake.base_url)

Modes of the default reply: a fixed text, `echo_user()` (answers the user message, i.e. the template), or a
callable `(request_json) -> text`. Status answers other than 200 carry an OpenAI-style error body; 429 carries
`retry-after` (seconds, default 0.01 so tests stay fast). Every request body is recorded in `requests`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

Reply = str | Callable[[dict[str, Any]], str]


class FakeGroqServer:
    PATH = "/openai/v1/chat/completions"

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._default: tuple[int, Reply | None] = (200, "ok")
        self._script: list[tuple[int, Reply | None]] = []
        self.retry_after = "0.01"
        self.delay_s = 0.0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                n = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(n) if n else b""
                if self.path.rstrip("/") != fake.PATH:
                    self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
                    return
                try:
                    body = json.loads(raw or b"{}")
                except json.JSONDecodeError:
                    self._send(400, {"error": {"message": "bad json", "type": "invalid_request_error"}})
                    return
                with fake._lock:
                    fake.requests.append(body)
                    fake.headers.append({k.lower(): v for k, v in self.headers.items()})
                    status, reply = fake._script.pop(0) if fake._script else fake._default
                if fake.delay_s:
                    time.sleep(fake.delay_s)
                if status != 200:
                    extra = {"retry-after": fake.retry_after} if status == 429 else {}
                    kind = "rate_limit_exceeded" if status == 429 else "server_error"
                    self._send(status, {"error": {"message": f"fake {status}", "type": kind}}, extra)
                    return
                text = reply(body) if callable(reply) else (reply or "")
                self._send(200, fake._completion(body, text))

            def _send(
                self, status: int, payload: dict[str, Any], extra: dict[str, str] | None = None
            ) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer((host, 0), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # --- scripting ---
    def reply(self, text: Reply) -> None:
        with self._lock:
            self._default = (200, text)

    def fail_always(self, status: int) -> None:
        with self._lock:
            self._default = (status, None)

    def echo_user(self) -> None:
        """Answer with the last user message of the request (the template the formatter sent)."""
        self.reply(lambda body: next(m["content"] for m in reversed(body["messages"]) if m["role"] == "user"))

    def script(self, entries: list[tuple[int, Reply | None]]) -> None:
        with self._lock:
            self._script = list(entries)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.headers.clear()
            self._script.clear()
            self._default = (200, "ok")
            self.retry_after = "0.01"
            self.delay_s = 0.0

    @property
    def calls(self) -> int:
        with self._lock:
            return len(self.requests)

    # --- lifecycle ---
    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-groq", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @staticmethod
    def _completion(body: dict[str, Any], text: str) -> dict[str, Any]:
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model", "fake"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            "system_fingerprint": "fake",
        }
