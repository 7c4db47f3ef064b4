"""Report and takedown over HTTP (seed §10): any signed-in user reports a character or a job and learns nothing
about whether it exists; the character is frozen at once for everyone, its owner included (generation, history,
its jobs and files: 423 `frozen`); an administrator lists reports and resolves one by unfreezing or erasing the
character. Every step is audited, and events go out on NATS."""

from __future__ import annotations

from pathlib import Path

from idlock import subjects
from idlock.settings import NatsSettings
from tests.harness import stream_events
from tests.integration.gateway.test_gateway_api import (
    PASSWORD,
    Api,
    Mesh,
    assert_error,
    make_character,
    running,
)


async def _admin(api: Api) -> dict[str, str]:
    await api.gateway.users.create_admin("root@example.com", PASSWORD)
    r = await api.client.post("/auth/login", json={"email": "root@example.com", "password": PASSWORD})
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


async def test_a_report_freezes_the_character_until_an_admin_unfreezes_it(
    mesh: Mesh, tmp_path: Path, nats_server
) -> None:
    async with running(mesh, tmp_path, nats_url=nats_server.url) as api:
        api.gateway.nats_settings = NatsSettings(url=nats_server.url, connect_timeout_s=2)
        owner, reporter = await api.user("owner@example.com"), await api.user("reporter@example.com")
        cid = await make_character(api, owner)
        job = await api.client.post(
            "/api/v1/generate", json={"character_id": cid, "prompt": "a walk"}, headers=owner
        )
        job_id = job.json()["job_id"]
        assert (await api.client.get(f"/api/v1/characters/{cid}/history", headers=owner)).status_code == 200

        filed = await api.client.post(
            "/api/v1/report",
            json={"character_id": cid, "reason": "impersonation", "details": "this is my face"},
            headers=reporter,
        )
        assert filed.status_code == 202 and filed.json()["status"] == "open", filed.text
        # an id that names nothing gets the very same answer
        blind = await api.client.post(
            "/api/v1/report", json={"character_id": "chr_nothing", "reason": "other"}, headers=reporter
        )
        assert blind.status_code == 202 and set(blind.json()) == set(filed.json())

        # frozen for its owner too
        frozen = await api.client.post(
            "/api/v1/generate", json={"character_id": cid, "prompt": "another walk"}, headers=owner
        )
        assert_error(frozen, 423, "frozen", cid)
        submitted = len(api.mesh.orchestrator.submitted)
        assert_error(await api.client.get(f"/api/v1/characters/{cid}/history", headers=owner), 423, "frozen")
        assert_error(await api.client.get(f"/api/v1/job/{job_id}", headers=owner), 423, "frozen")
        assert len(api.mesh.orchestrator.submitted) == submitted  # nothing reached the mesh
        # a file of the character, behind a signed link
        (api.data_dir / "objects" / "characters" / cid).mkdir(parents=True)
        (api.data_dir / "objects" / "characters" / cid / "ref_0.png").write_bytes(b"\x89PNG\r\n\x1a\n")
        owner_id = (await api.client.get("/auth/me", headers=owner)).json()["user_id"]
        link = api.gateway.downloads.signer.url(
            "http://gateway.test", f"characters/{cid}/ref_0.png", owner_id
        )
        assert_error(await api.client.get(link.removeprefix("http://gateway.test")), 423, "frozen")

        # the review: only administrators
        assert_error(
            await api.client.get("/api/v1/admin/reports", headers=reporter), 403, "permission_denied"
        )
        admin = await _admin(api)
        listed = (await api.client.get("/api/v1/admin/reports", headers=admin)).json()["items"]
        mine = {r["report_id"]: r for r in listed}
        report = mine[filed.json()["report_id"]]
        assert report["character_id"] == cid and report["reason"] == "impersonation"
        assert report["details"] == "this is my face" and report["status"] == "open"
        assert mine[blind.json()["report_id"]]["character_id"] is None  # it named nothing: nothing frozen

        resolved = await api.client.post(
            f"/api/v1/admin/reports/{report['report_id']}/resolve",
            json={"action": "unfreeze", "note": "the owner's own face"},
            headers=admin,
        )
        assert resolved.status_code == 200 and resolved.json()["resolution"] == "unfreeze", resolved.text
        again = await api.client.post(
            f"/api/v1/admin/reports/{report['report_id']}/resolve", json={"action": "erase"}, headers=admin
        )
        assert_error(again, 409, "already_resolved")
        assert (await api.client.get(f"/api/v1/characters/{cid}/history", headers=owner)).status_code == 200
        assert (await api.client.get(link.removeprefix("http://gateway.test"))).status_code == 200

        actions = [e.action for e in await api.audit()]
        assert actions.count("report_file") == 2 and actions.count("report_resolve") == 1
        filed_events = await stream_events(nats_server.url, subjects.REPORT_FILED, want=2)
        assert {e.report_id for e in filed_events} >= {filed.json()["report_id"], blind.json()["report_id"]}
        resolved_events = await stream_events(nats_server.url, subjects.REPORT_RESOLVED)
        assert [e.action for e in resolved_events] == ["unfreeze"]


async def test_a_reported_job_freezes_its_character_and_erase_takes_it_down(
    mesh: Mesh, tmp_path: Path
) -> None:
    async with running(mesh, tmp_path) as api:
        owner, reporter = await api.user("owner@example.com"), await api.user("reporter@example.com")
        cid = await make_character(api, owner)
        job = await api.client.post(
            "/api/v1/generate", json={"character_id": cid, "prompt": "a walk"}, headers=owner
        )
        first = await api.client.post(
            "/api/v1/report",
            json={"job_id": job.json()["job_id"], "reason": "sexual_real_person"},
            headers=reporter,
        )
        second = await api.client.post(
            "/api/v1/report", json={"character_id": cid, "reason": "harassment"}, headers=reporter
        )
        assert first.status_code == second.status_code == 202
        assert_error(await api.client.get(f"/api/v1/characters/{cid}/history", headers=owner), 423, "frozen")

        admin = await _admin(api)
        # unfreezing one report leaves the character frozen while the other is open
        await api.client.post(
            f"/api/v1/admin/reports/{second.json()['report_id']}/resolve",
            json={"action": "unfreeze"},
            headers=admin,
        )
        assert_error(await api.client.get(f"/api/v1/characters/{cid}/history", headers=owner), 423, "frozen")
        erased = await api.client.post(
            f"/api/v1/admin/reports/{first.json()['report_id']}/resolve",
            json={"action": "erase"},
            headers=admin,
        )
        assert erased.status_code == 200 and erased.json()["resolution"] == "erase", erased.text
        assert api.mesh.memory.deleted == [cid]
        assert (await api.client.get(f"/api/v1/characters/{cid}", headers=owner)).status_code == 404
        (deleted,) = await api.audit("character_delete")
        assert deleted.details["owner_id"] != deleted.user_id  # an administrator erased the owner's character
        open_left = (await api.client.get("/api/v1/admin/reports", headers=admin)).json()["items"]
        assert open_left == []


async def test_report_bodies_are_checked(mesh: Mesh, tmp_path: Path) -> None:
    async with running(mesh, tmp_path) as api:
        await _bodies_are_checked(api)


async def _bodies_are_checked(api: Api) -> None:
    who = await api.user("reporter@example.com")
    for body, fragment in (
        ({"reason": "other"}, "exactly one"),
        ({"character_id": "c", "job_id": "j", "reason": "other"}, "exactly one"),
        ({"character_id": "c", "reason": "because"}, "reason"),
        ({"character_id": "c", "reason": "other", "details": "x" * 4001}, "details"),
    ):
        r = await api.client.post("/api/v1/report", json=body, headers=who)
        assert r.status_code in (400, 422) and fragment in r.text, (body, r.text)
    assert (
        await api.client.post("/api/v1/report", json={"character_id": "c", "reason": "other"})
    ).status_code == 401
