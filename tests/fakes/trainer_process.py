"""The trainer service as a process of its own, for tests that kill and restart it: `python -m
tests.fakes.trainer_process`, configured by the environment like `python -m services.trainer`. It is the real service
(its NATS consumers, database, object store and training) with one stand-in: validation scores renders with
`alternating_scorer`, since a tiny random model draws no face for the identity model to find."""

from __future__ import annotations

import asyncio

from idlock import telemetry
from idlock.grpc_server import run_forever
from services.trainer.server import TrainerServicer, spec_for
from services.trainer.settings import TrainerSettings
from tests.fakes.trainer_data import alternating_scorer


def main() -> None:
    settings = TrainerSettings()
    telemetry.setup("trainer")
    servicer = TrainerServicer(settings, face_finder=None, scorer_factory=alternating_scorer())
    asyncio.run(run_forever(spec_for(servicer), settings))


if __name__ == "__main__":
    main()
