"""What one orchestrator process opens and closes, in one place: the job database, the bus (events and the job
queue), the outbox relay that publishes on it, object storage, the peers (memory, render, identity, refiner), the
state extractor (a vision model when a key is set, else the labelled heuristic), the job worker built from them and
the job slots it runs in.
Built once from the settings at start-up; nothing below it reads the environment."""

from __future__ import annotations

import socket
import uuid

from google.protobuf.message import Message

from idlock import subjects
from idlock.bus import EventBus
from idlock.db import Database
from idlock.settings import DatabaseSettings, MeshSettings, NatsSettings, PathsSettings, StorageSettings
from idlock.storage import ObjectStore, open_store
from idlock.v1 import events_pb2
from services.orchestrator.clients import GrpcPeers
from services.orchestrator.flow import FlowConfig, Peers
from services.orchestrator.jobs import JobStore
from services.orchestrator.local_start import LocalStarts
from services.orchestrator.models import SCHEMA_VERSION, UPGRADES, Base
from services.orchestrator.outbox import Relay
from services.orchestrator.settings import OrchestratorSettings
from services.orchestrator.state_extraction import StateExtractor, VisionStateReader
from services.orchestrator.usage import UsageReports
from services.orchestrator.worker import JobWorker

#: a publish NATS does not acknowledge in this time is tried again by the relay
PUBLISH_TIMEOUT_S = 2.0


class BusEvents:
    """Job events on `idlock.events.job.<verb>`, de-duplicated by message id."""

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus

    async def job_event(self, verb: str, event: events_pb2.JobEvent, msg_id: str) -> None:
        await self.bus.publish(subjects.event_subject("job", verb), event, msg_id=msg_id)


class OrchestratorRuntime:
    def __init__(self, settings: OrchestratorSettings, *, peers: Peers | None = None) -> None:
        self.settings = settings
        self.worker_id = f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        self._own_peers = peers is None
        self.peers: Peers | None = peers
        self.db: Database | None = None
        self.store: JobStore | None = None
        self.bus: EventBus | None = None
        self.objects: ObjectStore | None = None
        self.extractor: StateExtractor | None = None
        self.jobs: JobWorker | None = None
        self.relay: Relay | None = None
        self.usage: UsageReports | None = None
        #: the job slots, and the jobs started where they were accepted (opened with the worker)
        self.local: LocalStarts | None = None

    # --- lifecycle: opened in this order, closed in reverse ----------------------------------------------------

    async def open(self) -> None:
        s = self.settings
        data_dir = PathsSettings().data_dir
        self.db = Database.open(DatabaseSettings(), service="orchestrator", data_dir=data_dir)
        await self.db.migrate(Base.metadata, version=SCHEMA_VERSION, upgrades=UPGRADES)
        self.store = JobStore(self.db)
        self.usage = UsageReports(self.db)
        self.bus = await EventBus.connect(NatsSettings(), name=f"orchestrator-{self.worker_id}")
        await self.bus.ensure_streams()
        self.relay = Relay(self.db, self._publish, poll_s=s.outbox_poll_s)
        self.objects = await open_store(StorageSettings(), data_dir)
        if self.peers is None:
            self.peers = GrpcPeers(MeshSettings())
        key = s.gemini_api_key.get_secret_value()
        reader = (
            VisionStateReader(key, s.gemini_model, base_url=s.gemini_base_url, timeout_s=s.step_timeout_s)
            if key
            else None
        )
        self.extractor = StateExtractor(reader, timeout_s=s.step_timeout_s)
        self.jobs = JobWorker(
            self.store,
            self.peers,
            BusEvents(self.bus),
            self.extractor,
            FlowConfig.from_settings(s),
            worker_id=self.worker_id,
            objects=self.objects,
            on_outbox=self.relay.wake,
        )
        self.relay.job_events = self.jobs.events
        self.local = LocalStarts(
            self.jobs,
            self.store,
            concurrency=s.concurrency,
            enabled=s.local_start,
            backoff_s=s.backoff_s,
            ready=lambda: self.bus is not None and self.bus.nc.is_connected,
            on_outbox=self.relay.wake,
        )

    async def close(self) -> None:
        if self.bus is not None:
            await self.bus.close()
        if self.extractor is not None:
            await self.extractor.aclose()
        if self.peers is not None and self._own_peers:
            await self.peers.close()  # type: ignore[attr-defined]
        if self.objects is not None:
            await self.objects.close()
        if self.db is not None:
            await self.db.close()

    # --- the outbox's messages go out here ----------------------------------------------------------------------

    async def _publish(self, subject: str, message: Message, msg_id: str, headers: dict[str, str]) -> None:
        await self.bus.publish(subject, message, msg_id=msg_id, headers=headers, timeout_s=PUBLISH_TIMEOUT_S)


__all__ = ["BusEvents", "OrchestratorRuntime"]
