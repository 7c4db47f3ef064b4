"""A local fake of the Gemini REST API for tests and benches: the real google-genai client talks to it.

    with FakeGeminiServer() as fake:
        settings.gemini_base_url = fake.base_url
        fake.script(Reply.status(429, retry_after=0.3), Reply.ok())   # next calls, in order; then `default`
        ...
        fake.calls, fake.requests[-1].texts, fake.requests[-1].images

An image answer is, by default, a small PNG coloured by the prompt. Two answers stand for what real image models
do with reference images: `Reply.copy()` (or `fake.answer = "copy"`) returns the first input image verbatim, as an
edit model sometimes does; `Reply.edit()` (or `fake.answer = "edit"`) answers like an edit model that follows the
prompt: the offline compositor's scene, its story state read from the prompt, the first input's face re-posed in it.

Routes live in a table (`self.routes`: method, regex, handler). Veo's long-running operations are served too:

    fake.veo_script(VeoPlan.finish(after=2), VeoPlan.fail(after=1), VeoPlan.stall())   # next creations, in order
    POST .../models/{model}:predictLongRunning      -> {"name": ".../operations/<id>"}  (counted: fake.veo_creations)
    POST .../models/{model}:fetchPredictOperation   -> the operation (the Vertex protocol google-genai speaks)
    GET  .../operations/<id>                        -> the operation (the Gemini API protocol)
    GET  /download/<id>.mp4                         -> the video bytes (when a plan asks for delivery by URI)

A finished operation carries a short real MP4 (OpenCV, the offline compositor's scene with the first reference
image's face moving through it).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from PIL import Image

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_STATUS_MESSAGES = {
    400: "Request contains an invalid argument.",
    401: "API key not valid. Please pass a valid API key.",
    403: "Permission denied: the API key has no access to this model.",
    404: "models/{model} is not found for API version v1beta, or is not supported for generateContent.",
    429: "Resource has been exhausted (e.g. check quota).",
    500: "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
    503: "The model is overloaded. Please try again later.",
    504: "The request timed out. Please try again.",
}


@dataclass
class Reply:
    """One scripted answer. Build with the class methods."""

    kind: str = "ok"  # ok | status | prompt_blocked | finish_blocked | malformed | no_image | text_only | hang | copy | edit
    status: int = 200
    retry_after: float | None = None
    message: str | None = None
    reason: str = "SAFETY"
    hang_s: float = 0.0
    body: bytes | None = None
    image: bytes | None = None

    @classmethod
    def ok(cls, image: bytes | None = None) -> Reply:
        return cls("ok", image=image)

    @classmethod
    def error(cls, status: int, *, retry_after: float | None = None, message: str | None = None) -> Reply:
        return cls("status", status=status, retry_after=retry_after, message=message)

    status_ = error  # alias

    @classmethod
    def prompt_blocked(cls, reason: str = "SAFETY") -> Reply:
        return cls("prompt_blocked", reason=reason)

    @classmethod
    def finish_blocked(cls, reason: str = "IMAGE_SAFETY") -> Reply:
        return cls("finish_blocked", reason=reason)

    @classmethod
    def malformed(cls, body: bytes = b'{"candidates": [ {"content": ') -> Reply:
        return cls("malformed", body=body)

    @classmethod
    def no_image(cls) -> Reply:
        """Valid JSON, a candidate whose parts carry neither image nor text."""
        return cls("no_image")

    @classmethod
    def bad_image(cls) -> Reply:
        """inlineData that is not an image."""
        return cls("bad_image")

    @classmethod
    def text_only(cls, text: str = "I can't draw that, but here is a description.") -> Reply:
        return cls("text_only", message=text)

    @classmethod
    def hang(cls, seconds: float = 30.0) -> Reply:
        return cls("hang", hang_s=seconds)

    @classmethod
    def copy(cls) -> Reply:
        """The first input image, verbatim (an edit model that returns its input)."""
        return cls("copy")

    @classmethod
    def edit(cls) -> Reply:
        """The compositor's scene for the prompt, with the first input image's face re-posed in it."""
        return cls("edit")


@dataclass
class VeoPlan:
    """How one Veo operation behaves. Build with the class methods."""

    kind: str = "finish"  # finish | fail | stall | filtered | status (the creation call itself fails)
    after: int = 1  # polls before the operation is done
    code: int = 13  # google.rpc.Code of a failed operation (13 INTERNAL, 3 INVALID_ARGUMENT)
    message: str = "Video generation failed."
    status: int = 0
    retry_after: float | None = None
    video: bytes | None = None
    by_uri: bool = False

    @classmethod
    def finish(cls, after: int = 1, video: bytes | None = None, by_uri: bool = False) -> VeoPlan:
        return cls("finish", after=after, video=video, by_uri=by_uri)

    @classmethod
    def fail(cls, after: int = 1, code: int = 13, message: str = "Video generation failed.") -> VeoPlan:
        return cls("fail", after=after, code=code, message=message)

    @classmethod
    def stall(cls) -> VeoPlan:
        """Never finishes."""
        return cls("stall")

    @classmethod
    def filtered(cls, after: int = 1) -> VeoPlan:
        return cls("filtered", after=after)

    @classmethod
    def error(cls, status: int, *, retry_after: float | None = None) -> VeoPlan:
        """The creation call answers this HTTP status (no operation is created)."""
        return cls("status", status=status, retry_after=retry_after)


@dataclass
class VeoOperation:
    name: str
    model: str
    plan: VeoPlan
    prompt: str
    references: list[bytes]
    parameters: dict
    polls: int = 0


def fake_video(prompt: str, face: bytes | None, seconds: float = 2.0, fps: int = 8, size=(320, 240)) -> bytes:
    """A short real MP4: the offline compositor's scene, `face` (an image with a face) moving through it."""
    from services.render.models import MediaKind, RenderRequest
    from services.render.providers.compositor import CompositorProvider

    req = RenderRequest(
        prompt=prompt or "a scene",
        references=[face] if face else [],
        width=size[0],
        height=size[1],
        duration_s=seconds,
        fps=fps,
        seed=1,
        media=MediaKind.VIDEO,
    )
    return CompositorProvider().render_video_sync(req).video or b""


@dataclass
class RecordedRequest:
    method: str
    path: str
    model: str | None
    headers: dict[str, str]
    body: Any
    at: float = field(default_factory=time.monotonic)

    def parts(self) -> list[dict]:
        out: list[dict] = []
        for content in (self.body or {}).get("contents", []) if isinstance(self.body, dict) else []:
            out.extend(content.get("parts", []))
        return out

    def cast(self) -> list[tuple[str, str, list[bytes]]]:
        """(name, role, reference images) of each person a scene of several names ("Person 1: Arya (on the
        left). Reference images:" followed by that person's images), in order; empty for a scene of one."""
        out: list[tuple[str, str, list[bytes]]] = []
        for p in self.parts():
            m = _PERSON.match(p.get("text", ""))
            if m:
                out.append((m.group("name"), m.group("role") or "", []))
            elif "inlineData" in p and out:
                out[-1][2].append(_b64(p["inlineData"]["data"]))
        return out

    @property
    def texts(self) -> list[str]:
        return [p["text"] for p in self.parts() if "text" in p]

    @property
    def images(self) -> list[bytes]:
        return [_b64(p["inlineData"]["data"]) for p in self.parts() if "inlineData" in p]

    @property
    def image_mimes(self) -> list[str]:
        # the real client writes `mime_type` (proto JSON accepts both spellings)
        return [
            p["inlineData"].get("mimeType") or p["inlineData"].get("mime_type", "")
            for p in self.parts()
            if "inlineData" in p
        ]

    @property
    def generation_config(self) -> dict:
        return (self.body or {}).get("generationConfig", {}) if isinstance(self.body, dict) else {}


def _b64(text: str) -> bytes:
    """Decode base64 as the client sends it (URL-safe alphabet, padding optional) or the standard one."""
    text = text.replace("-", "+").replace("_", "/")
    return base64.b64decode(text + "=" * (-len(text) % 4))


_PERSON = re.compile(r"^Person \d+: (?P<name>.+?)(?: \((?P<role>.*)\))?\. Reference images:$")


def cast_image(
    cast: list[tuple[str, str, list[bytes]]], swap: bool, size: tuple[int, int] = (768, 512)
) -> bytes:
    """What a model asked for a scene of several people might answer: each person's first reference face at the
    place its role names (the offline compositor's cast scene); `swap` gives each place another person's face, as
    a model that mixes people up does."""
    from idlock.faces.cast import placement_of
    from services.render.models import CastPart, RenderRequest
    from services.render.providers.compositor import CompositorProvider

    faces = [images[:1] for _, _, images in cast]
    if swap:
        faces = faces[1:] + faces[:1]
    parts = [
        CastPart(character_id=name, name=name, placement=placement_of(role), role=role, references=face)
        for (name, role, _), face in zip(cast, faces, strict=True)
    ]
    req = RenderRequest(prompt="a scene", width=size[0], height=size[1], seed=7, cast=parts)
    return CompositorProvider().render_sync(req).image


def edited_image(prompt: str, images: list[bytes], size: tuple[int, int] = (512, 512)) -> bytes:
    """What an edit model following the prompt might answer: the scene the prompt describes (its state read by the
    keyword reader, as a model reads the prompt), the first input's face re-posed in it (the offline compositor)."""
    from services.orchestrator.state_extraction import heuristic_state
    from services.render.models import RenderRequest, SceneState
    from services.render.providers.compositor import CompositorProvider

    read = heuristic_state(prompt)
    state = SceneState(**{c: tuple(v) for c, v in read.added.items()})
    seed = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:4], "big")
    req = RenderRequest(
        prompt=prompt or "a scene",
        references=images[:1],
        width=size[0],
        height=size[1],
        seed=seed,
        state=state,
    )
    return CompositorProvider().render_sync(req).image


def default_image(prompt: str, size: tuple[int, int] = (64, 64)) -> bytes:
    """A small PNG whose colour depends on the prompt (so tests can tell answers apart)."""
    h = hashlib.sha256(prompt.encode()).digest()
    im = Image.new("RGB", size, (h[0], h[1], h[2]))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


Handler = Callable[["FakeGeminiServer", "_RequestHandler", re.Match, RecordedRequest], None]


class FakeGeminiServer:
    """Threaded HTTP server speaking generateContent. Context manager; `start()`/`stop()` also work."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.default: Reply = Reply.ok()
        self._script: list[Reply] = []
        self.requests: list[RecordedRequest] = []
        self.image: bytes | None = None  # answer image for Reply.ok() without one; None = `answer` decides
        #: what Reply.ok() without an image answers: "colour" (default_image), "copy" or "edit" (see Reply)
        self.answer = "colour"
        #: "edit" answers to a scene of several people give each place another person's face
        self.swap_cast = False
        self.expected_api_key: str | None = None  # when set, other keys get 400 API_KEY_INVALID
        #: seconds every answer waits first, standing in for the model's own generation time (benchmarks)
        self.latency_s = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        # --- Veo ---
        self.veo_default: VeoPlan = VeoPlan.finish(after=1)
        self._veo_script: list[VeoPlan] = []
        self.operations: dict[str, VeoOperation] = {}
        #: operations created (a resumed operation is polled, never created again)
        self.veo_creations = 0
        self.veo_polls = 0
        #: answer video for finished operations without their own; None = fake_video(prompt, first reference)
        self.video: bytes | None = None
        self.video_seconds = 2.0
        self._video_cache: dict[str, bytes] = {}
        self.routes: list[tuple[str, re.Pattern, Handler]] = [
            (
                "POST",
                re.compile(r"^/(?P<version>v1\w*)/models/(?P<model>[^/:]+):generateContent$"),
                FakeGeminiServer._generate_content,
            ),
            (
                "POST",
                re.compile(
                    r"^/(?P<version>v1\w*)/(?P<prefix>(?:[^:]*/)?)models/(?P<model>[^/:]+):predictLongRunning$"
                ),
                FakeGeminiServer._predict_long_running,
            ),
            (
                "POST",
                re.compile(
                    r"^/(?P<version>v1\w*)/(?P<prefix>(?:[^:]*/)?)models/(?P<model>[^/:]+):fetchPredictOperation$"
                ),
                FakeGeminiServer._fetch_predict_operation,
            ),
            ("GET", re.compile(r"^/download/(?P<op>[0-9a-f]+)\.mp4$"), FakeGeminiServer._download),
            (
                "GET",
                re.compile(r"^/(?P<version>v1\w*)/(?P<name>(?:[^:]*/)?operations/[^/:]+)$"),
                FakeGeminiServer._get_operation,
            ),
        ]
        self._httpd = ThreadingHTTPServer((host, port), _RequestHandler)
        self._httpd.daemon_threads = True
        self._httpd.fake = self  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeGeminiServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-gemini", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()  # wakes hanging handlers
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- scripting ------------------------------------------------------------------------------------------------
    def script(self, *replies: Reply) -> None:
        """Answer the next calls with these replies, in order; afterwards `self.default`."""
        with self._lock:
            self._script.extend(replies)

    def reset(self) -> None:
        with self._lock:
            self._script.clear()
            self.requests.clear()
            self.default = Reply.ok()
            self.answer = "colour"
            self.swap_cast = False
            self._veo_script.clear()
            self.veo_default = VeoPlan.finish(after=1)
            self.operations.clear()
            self.veo_creations = 0
            self.veo_polls = 0

    def veo_script(self, *plans: VeoPlan) -> None:
        """The next Veo operations behave like these, in order; afterwards `self.veo_default`."""
        with self._lock:
            self._veo_script.extend(plans)

    @property
    def calls(self) -> int:
        return len(self.requests)

    def _next_reply(self) -> Reply:
        with self._lock:
            return self._script.pop(0) if self._script else self.default

    # -- handlers -------------------------------------------------------------------------------------------------
    def _generate_content(self, h: _RequestHandler, m: re.Match, rec: RecordedRequest) -> None:
        rec.model = m.group("model")
        if self.expected_api_key is not None and rec.headers.get("x-goog-api-key") != self.expected_api_key:
            return h.send_json(400, _error_body(400, "API key not valid. Please pass a valid API key."))
        reply = self._next_reply()
        prompt = " ".join(rec.texts)
        if self.latency_s:
            self._stop.wait(self.latency_s)
        if reply.kind == "hang":
            self._stop.wait(reply.hang_s)
            reply = Reply.ok()
        if reply.kind == "status":
            msg = reply.message or _STATUS_MESSAGES.get(reply.status, "error").format(model=rec.model)
            headers = {}
            if reply.retry_after is not None:
                ra = reply.retry_after
                headers["Retry-After"] = str(int(ra)) if float(ra).is_integer() else f"{ra:g}"
            return h.send_json(reply.status, _error_body(reply.status, msg), headers)
        if reply.kind == "prompt_blocked":
            return h.send_json(
                200, {"promptFeedback": {"blockReason": reply.reason}, "modelVersion": rec.model}
            )
        if reply.kind == "finish_blocked":
            return h.send_json(
                200,
                {
                    "candidates": [
                        {"content": {"role": "model", "parts": []}, "finishReason": reply.reason, "index": 0}
                    ],
                    "modelVersion": rec.model,
                },
            )
        if reply.kind == "malformed":
            return h.send_raw(200, reply.body or b"not json", "application/json")
        if reply.kind == "no_image":
            return h.send_json(
                200, {"candidates": [{"content": {"role": "model", "parts": []}, "finishReason": "STOP"}]}
            )
        if reply.kind == "bad_image":
            return h.send_json(200, _image_body(b"definitely not a png", "image/png", rec.model))
        if reply.kind == "text_only":
            return h.send_json(
                200,
                {
                    "candidates": [
                        {
                            "content": {"role": "model", "parts": [{"text": reply.message}]},
                            "finishReason": "STOP",
                        }
                    ]
                },
            )
        kind = reply.kind if reply.kind in ("copy", "edit") else self.answer
        image = reply.image or (None if reply.kind in ("copy", "edit") else self.image)
        if image is None and kind == "copy" and rec.images:
            image = rec.images[0]
        elif image is None and kind == "edit" and rec.cast():
            image = cast_image(rec.cast(), self.swap_cast)
        elif image is None and kind == "edit":
            image = edited_image(prompt, rec.images)
        image = image or default_image(prompt)
        return h.send_json(200, _image_body(image, "image/png", rec.model))

    # -- Veo handlers ---------------------------------------------------------------------------------------------
    def _check_key(self, h: _RequestHandler, rec: RecordedRequest) -> bool:
        if self.expected_api_key is not None and rec.headers.get("x-goog-api-key") != self.expected_api_key:
            h.send_json(400, _error_body(400, "API key not valid. Please pass a valid API key."))
            return False
        return True

    def _predict_long_running(self, h: _RequestHandler, m: re.Match, rec: RecordedRequest) -> None:
        rec.model = m.group("model")
        if not self._check_key(h, rec):
            return
        with self._lock:
            plan = self._veo_script.pop(0) if self._veo_script else self.veo_default
        if plan.kind == "status":
            headers = {}
            if plan.retry_after is not None:
                headers["Retry-After"] = f"{plan.retry_after:g}"
            msg = _STATUS_MESSAGES.get(plan.status, "error").format(model=rec.model)
            return h.send_json(plan.status, _error_body(plan.status, msg), headers)
        body = rec.body if isinstance(rec.body, dict) else {}
        instance = (body.get("instances") or [{}])[0]
        refs = []
        for item in instance.get("referenceImages") or []:
            data = (item.get("image") or {}).get("bytesBase64Encoded")
            if data:
                refs.append(_b64(data))
        op_id = hashlib.sha256(f"{time.time_ns()}:{len(self.operations)}".encode()).hexdigest()[:16]
        name = f"{m.group('prefix')}models/{rec.model}/operations/{op_id}"
        with self._lock:
            self.veo_creations += 1
            self.operations[name] = VeoOperation(
                name, rec.model, plan, instance.get("prompt", ""), refs, body.get("parameters") or {}
            )
        return h.send_json(200, {"name": name})

    def _fetch_predict_operation(self, h: _RequestHandler, m: re.Match, rec: RecordedRequest) -> None:
        rec.model = m.group("model")
        if not self._check_key(h, rec):
            return
        name = (rec.body or {}).get("operationName", "") if isinstance(rec.body, dict) else ""
        self._answer_operation(h, name)

    def _get_operation(self, h: _RequestHandler, m: re.Match, rec: RecordedRequest) -> None:
        if not self._check_key(h, rec):
            return
        self._answer_operation(h, m.group("name"))

    def _answer_operation(self, h: _RequestHandler, name: str) -> None:
        with self._lock:
            op = self.operations.get(name)
            if op is not None:
                op.polls += 1
                self.veo_polls += 1
        if op is None:
            return h.send_json(404, _error_body(404, f"operation {name} not found"))
        plan = op.plan
        if plan.kind == "stall" or op.polls < plan.after:
            return h.send_json(200, {"name": name, "done": False, "metadata": {"polls": op.polls}})
        if plan.kind == "fail":
            return h.send_json(
                200, {"name": name, "done": True, "error": {"code": plan.code, "message": plan.message}}
            )
        rtype = "type.googleapis.com/cloud.ai.large_models.vision.GenerateVideoResponse"
        if plan.kind == "filtered":
            return h.send_json(
                200,
                {
                    "name": name,
                    "done": True,
                    "response": {
                        "@type": rtype,
                        "raiMediaFilteredCount": 1,
                        "raiMediaFilteredReasons": ["The prompt could not be submitted (person generation)."],
                    },
                },
            )
        if plan.by_uri:
            item = {
                "gcsUri": f"{self.base_url}/download/{name.rsplit('/', 1)[-1]}.mp4",
                "mimeType": "video/mp4",
            }
        else:
            item = {
                "bytesBase64Encoded": base64.b64encode(self._video_for(op)).decode(),
                "mimeType": "video/mp4",
            }
        return h.send_json(200, {"name": name, "done": True, "response": {"@type": rtype, "videos": [item]}})

    def _video_for(self, op: VeoOperation) -> bytes:
        if op.plan.video or self.video:
            return op.plan.video or self.video or b""
        face = op.references[0] if op.references else None
        key = hashlib.sha256(op.prompt.encode() + (face or b"")).hexdigest()
        if key not in self._video_cache:
            self._video_cache[key] = fake_video(op.prompt, face, seconds=self.video_seconds)
        return self._video_cache[key]

    def _download(self, h: _RequestHandler, m: re.Match, rec: RecordedRequest) -> None:
        op = next((o for o in self.operations.values() if o.name.endswith("/" + m.group("op"))), None)
        if op is None:
            return h.send_json(404, _error_body(404, "no such video"))
        return h.send_raw(200, self._video_for(op), "video/mp4")


def _error_body(status: int, message: str) -> dict:
    return {"error": {"code": status, "message": message, "status": _STATUS_NAMES.get(status, "UNKNOWN")}}


def _image_body(image: bytes, mime: str, model: str | None) -> dict:
    return {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [{"inlineData": {"mimeType": mime, "data": base64.b64encode(image).decode()}}],
                },
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 1290, "totalTokenCount": 1300},
        "modelVersion": model,
    }


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "FakeGemini/1.0"

    def log_message(self, fmt, *args) -> None:  # quiet
        pass

    def _dispatch(self, method: str) -> None:
        fake: FakeGeminiServer = self.server.fake  # type: ignore[attr-defined]
        path = self.path.split("?", 1)[0]
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        rec = RecordedRequest(method, path, None, {k.lower(): v for k, v in self.headers.items()}, body)
        for m_, rx, handler in fake.routes:
            m = rx.match(path)
            if m and m_ == method:
                with fake._lock:
                    fake.requests.append(rec)
                try:
                    handler(fake, self, m, rec)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                return
        self.send_json(404, _error_body(404, f"no route for {method} {path}"))

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_GET(self) -> None:
        self._dispatch("GET")

    def send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self.send_raw(status, json.dumps(obj).encode(), "application/json; charset=UTF-8", headers)

    def send_raw(self, status: int, data: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        # headers and body in one write: two small writes meet the client's delayed ACK (~40 ms per call)
        self._headers_buffer.append(b"\r\n")
        self._headers_buffer.append(data)
        self.flush_headers()


try:  # pytest fixture (import it into a conftest: `from tests.fakes.gemini_server import fake_gemini`)
    import pytest

    @pytest.fixture
    def fake_gemini():
        with FakeGeminiServer() as server:
            yield server
except ImportError:  # pragma: no cover
    pass
