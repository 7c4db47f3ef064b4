"""The orchestrator with the real memory service (and real identity + render, nats-server): a character is
created through memory, two scenes are generated, and the story state recorded by the second reflects what the
first introduced and the second ended."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from idlock.v1 import common_pb2
from idlock.v1 import memory_service_pb2 as mpb
from tests.integration.orchestrator.conftest import OWNER, orchestrator


async def test_two_scenes_through_the_real_memory_service(real_mesh, tmp_path) -> None:
    peers, memory = real_mesh
    created = await memory.CreateCharacter(
        mpb.CreateCharacterRequest(
            owner_id=OWNER,
            name="Arya",
            consent_given=True,
            request_id="arya-1",
            reference_images=[common_pb2.ImageInput(ref=peers.references[0])],
            sheet=mpb.CharacterSheet(hair="short dark hair", eyes="brown eyes"),
        )
    )
    cid = created.character.id
    assert created.character.status == mpb.CHARACTER_STATUS_READY, created.character.status_reasons
    async with orchestrator(peers, tmp_path) as orch:
        first = (
            await orch.submit(cid, prompt="Arya in a red cloak holds a sword in a forest, determined")
        ).job
        one = await orch.wait_status(
            first.id, [common_pb2.JOB_STATUS_SUCCEEDED, common_pb2.JOB_STATUS_FAILED]
        )
        assert one.status == common_pb2.JOB_STATUS_SUCCEEDED, one.error_message
        assert one.metrics.scene_index == 1 and one.metrics.prompt_engine == "template"
        assert one.metrics.idr_before.raw > 0.5 and one.metrics.provider_label == "offline/compositor"

        second = (
            await orch.submit(cid, prompt="Arya takes off the red cloak and drops the sword in a tavern")
        ).job
        two = await orch.wait_status(
            second.id, [common_pb2.JOB_STATUS_SUCCEEDED, common_pb2.JOB_STATUS_FAILED]
        )
        assert two.status == common_pb2.JOB_STATUS_SUCCEEDED, two.error_message
        assert two.metrics.scene_index == 2 and list(two.metrics.tags.setting) == ["tavern"]

        history = await memory.ListHistory(mpb.ListHistoryRequest(character_id=cid, owner_id=OWNER))
        assert [e.job_id for e in history.episodes] == [second.id, first.id]
        assert history.episodes[0].state_source == "heuristic"
        assert history.episodes[0].image.uri == two.result_image.uri
        state = await memory.GetCurrentState(mpb.GetCurrentStateRequest(character_id=cid, owner_id=OWNER))
        now = {(i.category, i.name) for i in state.items}
        assert ("setting", "tavern") in now
        assert not any(name == "sword" for _, name in now) and not any("cloak" in name for _, name in now)

        # an unknown character and another owner's character are NOT_FOUND through the real memory service
        for kw in ({"character_id": "char_missing"}, {"character_id": cid, "owner_id": "someone-else"}):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await orch.submit(**kw)
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
        await asyncio.sleep(0)
