"""Server-sent events of a job for the REST API: a status frame now, then the orchestrator's WatchJob stream
translated frame by frame, with keep-alive comments, until the job ends or the stream limit is reached."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc

from gateway import views
from gateway.errors import from_grpc
from idlock.v1 import orchestrator_service_pb2 as orch_pb2

if TYPE_CHECKING:
    from gateway.core import Caller, Gateway


async def job_stream(gw: Gateway, caller: Caller, job_id: str, first: orch_pb2.Job) -> AsyncIterator[str]:
    """Server-sent events of a job: its state now, then every change the orchestrator reports until it ends."""
    seq = 0

    def frame(event: str, data: dict[str, Any]) -> str:
        nonlocal seq
        seq += 1
        return f"id: {seq}\nevent: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"

    snapshot = await views.job(first, gw.links(caller))
    yield frame("status", {"event": "status", "message": "", "job": snapshot})
    if snapshot["status"] in views.TERMINAL_JOB_STATUSES:
        return
    call = gw.orchestrator.WatchJob(
        orch_pb2.WatchJobRequest(job_id=job_id, owner_id=caller.user_id), timeout=gw.settings.sse_max_s
    )
    queue: asyncio.Queue[Any] = asyncio.Queue()
    end = object()

    async def pump() -> None:
        try:
            async for item in call:
                await queue.put(item)
        except grpc.aio.AioRpcError as err:
            await queue.put(err)
        finally:
            await queue.put(end)

    task = asyncio.create_task(pump())
    try:
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), timeout=gw.settings.sse_keepalive_s)
            except TimeoutError:
                yield ": keep-alive\n\n"
                continue
            if item is end:
                return
            if isinstance(item, grpc.aio.AioRpcError):
                if item.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                    yield frame("timeout", {"event": "timeout", "message": "stream limit reached; reconnect"})
                else:
                    yield frame("error", from_grpc(item, "orchestrator").body())
                return
            if item.job.owner_id and item.job.owner_id != caller.user_id:
                return
            data = await views.job(item.job, gw.links(caller)) if item.HasField("job") else None
            yield frame(item.event or "progress", {"event": item.event, "message": item.message, "job": data})
            if data is not None and data["status"] in views.TERMINAL_JOB_STATUSES:
                return
    finally:
        call.cancel()
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
