"""`idlock`: run the local mesh, single services, evaluations and the demo."""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from idlock.launch import SERVICES, serve_main
from idlock.settings import DEFAULT_PORTS, PathsSettings

app = typer.Typer(help="IDLock: consistent characters across every scene.", no_args_is_help=True)
console = Console(soft_wrap=True)


def _mount_optional(module: str, attr: str, name: str, help_text: str) -> None:
    """Sub-commands that live with their service (e.g. `idlock eval` with identity)."""
    try:
        sub = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        reason = str(err)  # `err` is unbound once the except block ends; the callback runs later
        missing = typer.Typer(help=f"{help_text} (unavailable: {reason})")

        @missing.callback(invoke_without_command=True)
        def _unavailable() -> None:
            console.print(
                f"[red]`idlock {name}` is unavailable: {reason}. Install the project with its extras.[/red]"
            )
            raise typer.Exit(2)

        app.add_typer(missing, name=name)
        return
    app.add_typer(sub, name=name, help=help_text)


_mount_optional("services.identity.cli", "eval_app", "eval", "Evaluate the identity encoders.")
_mount_optional("gateway.cli", "admin_app", "admin", "Gateway administration: create administrators.")


def _components_table(components, title: str) -> Table:
    table = Table(title=title)
    for col in ("component", "address", "metrics", "pid", "status"):
        table.add_column(col)
    for c in components:
        colour = "green" if c.status in ("SERVING", "EXTERNAL") else "red"
        table.add_row(
            c.name, c.address, c.metrics or "-", str(c.pid or "-"), f"[{colour}]{c.status}[/{colour}]"
        )
    return table


def _print_studio(gateway: str) -> None:
    console.print(f"studio: [bold]{gateway}/[/bold]   (the web page; API reference: {gateway}/docs)")


@app.command()
def up(
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Data folder (SQLite, Qdrant, objects, NATS).", envvar="IDLOCK_DATA_DIR"),
    ] = None,  # type: ignore[assignment]
    nats_url: Annotated[
        str, typer.Option(help="Use this NATS instead of starting one.", envvar="IDLOCK_NATS_URL")
    ] = "",
    nats_port: Annotated[
        int,
        typer.Option(help="Port of the NATS that `up` starts (0: a free one).", envvar="IDLOCK_NATS_PORT"),
    ] = 4222,
    gateway_port: Annotated[
        int | None,
        typer.Option(
            help=f"Port of the REST gateway [default: {DEFAULT_PORTS['gateway']}].",
            envvar="IDLOCK_GATEWAY_PORT",
        ),
    ] = None,
    free_ports: Annotated[
        bool, typer.Option(help="Pick free ports for every service instead of the defaults.")
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for every component to be SERVING.")] = 60.0,
) -> None:
    """Start NATS, every service and the gateway, and keep them up (a service that dies is started again; one
    that keeps dying stops the mesh, exit code 1); stop them all on Ctrl-C."""
    from idlock.mesh import LocalMesh, MeshError
    from idlock.supervise import GaveUp, Supervisor

    data_dir = data_dir or PathsSettings().data_dir
    ports = {"gateway": gateway_port} if gateway_port is not None else {}
    for name in SERVICES:
        env_port = os.environ.get(f"IDLOCK_{name.upper()}_PORT")
        if env_port:
            ports[name] = int(env_port)
    mesh = LocalMesh(data_dir, nats_url=nats_url, nats_port=nats_port, ports=ports, free_ports=free_ports)
    started = time.perf_counter()
    try:
        mesh.start(timeout_s=timeout)
    except MeshError as err:
        console.print(f"[red]idlock up failed:[/red] {err}")
        raise typer.Exit(1) from None
    console.print(
        _components_table(mesh.components.values(), f"IDLock mesh ({time.perf_counter() - started:.1f} s)")
    )
    console.print(f"data: {mesh.data_dir}   logs: {mesh.data_dir / 'logs'}   Ctrl-C stops everything")
    if "gateway" in mesh.components:
        _print_studio(mesh.components["gateway"].address)
    stop = {"now": False}

    def on_signal(signum, frame):
        stop["now"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    supervisor = Supervisor(mesh)
    gave_up = ""
    try:
        while not stop["now"]:
            try:
                for name in supervisor.check():  # a service that died is started again, after a backoff
                    console.print(
                        f"[yellow]{name} had exited; started again (see {mesh.components[name].log})[/yellow]"
                    )
            except GaveUp as err:
                gave_up = str(err)
                console.print(f"[red]{gave_up}; stopping the mesh[/red]")
                break
            time.sleep(0.5)
    finally:
        console.print("stopping ...")
        codes = mesh.stop()
        bad = {k: v for k, v in codes.items() if v not in (0, -signal.SIGTERM)}
        console.print("stopped" + (f" (non-zero exits: {bad})" if bad else " cleanly"))
    if gave_up:
        raise typer.Exit(1)


@app.command()
def status(
    data_dir: Annotated[
        Path | None, typer.Option(help="Data folder of the running mesh.", envvar="IDLOCK_DATA_DIR")
    ] = None,  # type: ignore[assignment]
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    metrics: Annotated[
        bool,
        typer.Option(
            "--metrics",
            help="Also print the key figures from every process's metrics: jobs, p95 duration, queue, mean IDR.",
        ),
    ] = False,
) -> None:
    """Health of each component of the mesh started by `idlock up` (and, with --metrics, its key figures)."""
    from idlock.mesh import grpc_health, http_health, read_state

    data_dir = data_dir or PathsSettings().data_dir
    components = read_state(data_dir)
    if not components:
        console.print(f"no mesh is running from {data_dir} (start one with `idlock up`)")
        raise typer.Exit(1)
    for c in components:
        if c.kind == "grpc":
            c.status = grpc_health(c.address)
        elif c.kind == "http":
            c.status = http_health(c.address)
    figures = _key_figures(components) if metrics else None
    if as_json:
        doc: dict[str, object] = {
            c.name: {"address": c.address, "metrics": c.metrics, "status": c.status, "pid": c.pid}
            for c in components
        }
        if figures is not None:
            doc = {"components": doc, "figures": dataclasses.asdict(figures)}
        print(json.dumps(doc))
    else:
        console.print(_components_table(components, "IDLock mesh"))
        if figures is not None:
            _print_figures(figures)
    if any(c.status not in ("SERVING", "EXTERNAL") for c in components):
        raise typer.Exit(1)


def _key_figures(components):
    from idlock.mesh_metrics import key_figures, scrape

    samples = []
    for c in components:
        if c.metrics:
            try:
                samples.extend(scrape(c.metrics))
            except OSError as err:
                console.print(f"[yellow]{c.name}: metrics unreadable at {c.metrics} ({err})[/yellow]")
    return key_figures(samples)


def _print_figures(k) -> None:
    def seconds(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f} s"

    table = Table(title="Key figures (since each process started)")
    table.add_column("figure")
    table.add_column("value")
    ended = ", ".join(f"{status} {n:.0f}" for status, n in sorted(k.jobs.items())) or "none"
    table.add_row("jobs submitted", f"{k.submitted:.0f}")
    table.add_row("jobs ended", ended)
    table.add_row(
        "image job duration p50 / p95", f"{seconds(k.duration_p50_s)} / {seconds(k.duration_p95_s)}"
    )
    table.add_row("image jobs under 7 s (SLO 95%)", "-" if k.under_slo is None else f"{k.under_slo:.1%}")
    table.add_row("job queue: waiting / not acknowledged", f"{k.queue_depth:.0f} / {k.queue_lag:.0f}")
    idr = "-" if k.idr_mean is None else f"{k.idr_mean:.3f} over {k.idr_count:.0f} results"
    table.add_row("mean calibrated IDR (delivered)", idr)
    for name, p95 in sorted(k.step_p95_s.items(), key=lambda kv: -kv[1]):
        table.add_row(f"step {name} p95", seconds(p95))
    for name, p95 in sorted(k.provider_p95_s.items(), key=lambda kv: -kv[1]):
        table.add_row(f"provider {name} p95", seconds(p95))
    for name, n in sorted(k.errors.items()):
        table.add_row(name, f"{n:.0f}")
    console.print(table)


@app.command()
def serve(name: Annotated[str, typer.Argument(help=f"One of: {', '.join(SERVICES)}, gateway.")]) -> None:
    """Run one service in the foreground (what `python -m services.<name>` does)."""
    if name == "gateway":
        importlib.import_module("gateway.__main__")
        return
    serve_main(name)


@app.command()
def config(
    update: Annotated[
        Path | None, typer.Option(help="Rewrite the table in this README instead of printing it.")
    ] = None,
) -> None:
    """Every setting as a Markdown table: environment variable, default and description (as in the README)."""
    from idlock.config_docs import config_table, update_readme

    if update is None:
        print(config_table())
    else:
        print(f"{update}: {'updated' if update_readme(update) else 'already up to date'}")


@app.command()
def demo(
    out: Annotated[
        Path, typer.Option(help="Folder for the contact sheet, the scene images and report.json.")
    ] = Path("demo-out"),
    ref: Annotated[
        list[Path] | None,
        typer.Option(help="Reference photo(s) of the character (1-5); default: a sample photo."),
    ] = None,
    video: Annotated[
        bool, typer.Option("--video", help="Make every scene a short video and report IDR per sampled frame.")
    ] = False,
    stay: Annotated[
        bool,
        typer.Option(
            "--stay",
            help="Keep the mesh running after the story, to look at it in the studio (Ctrl-C stops).",
        ),
    ] = False,
) -> None:
    """A three-scene story on the local mesh, through the REST gateway (no keys needed)."""
    from idlock.demo import DemoError, run_demo
    from idlock.mesh import MeshError

    references = None
    if ref:
        missing = [str(p) for p in ref if not p.is_file()]
        if missing:
            console.print(f"[red]reference file not found: {', '.join(missing)}[/red]")
            raise typer.Exit(2)
        references = [(p.name, p.read_bytes()) for p in ref]
    started = time.perf_counter()
    table = Table(title="IDLock demo: three " + ("video scenes" if video else "scenes"))
    columns = [
        "scene", "status", "provider", "IDR raw", "IDR cal.", "verdict", "copy sim.", "near-copy", "refined",
        "state tags", "s",
    ]  # fmt: skip
    if video:
        columns[8:9] = ["regenerated", "frame IDR (t: cal.)", "min / mean"]
    for col in columns:
        table.add_column(col)

    def on_mesh(mesh) -> None:
        console.print(
            f"mesh up: gateway {mesh.components['gateway'].address} (logs in {mesh.data_dir / 'logs'})"
        )
        _print_studio(mesh.components["gateway"].address)

    def stay_up(mesh, report) -> None:
        studio = report["studio"]
        console.print(table)
        console.print(
            f"the mesh stays up: open [bold]{studio['url']}[/bold] and sign in as {studio['email']} "
            f"with the password {studio['password']}; Ctrl-C stops it"
        )
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            console.print("stopping ...")

    def on_scene(scene) -> None:
        tags = "; ".join(f"{k}: {', '.join(v)}" for k, v in scene.tags.items())
        refined = "yes" if scene.refined else ("gate fired" if scene.refine_needed else "no")
        row = [
            str(scene.index),
            scene.status,
            scene.provider_label or scene.provider or "-",
            f"{scene.idr_raw:.3f}" if scene.idr_raw is not None else "-",
            f"{scene.idr_calibrated:.3f}" if scene.idr_calibrated is not None else "-",
            scene.verdict or "-",
            f"{scene.copy_similarity:.3f}" if scene.copy_similarity is not None else "-",
            "-" if scene.near_copy is None else ("yes" if scene.near_copy else "no"),
            refined,
            tags or "-",
            f"{scene.seconds:.1f}",
        ]
        if video:
            frames = " ".join(
                f"{f['timestamp_s']:.0f}s: {f['idr_calibrated']:.2f}"
                if f["face_found"]
                else f"{f['timestamp_s']:.0f}s: no face"
                for f in scene.frame_idrs
            )
            summary = (
                f"{scene.frame_idr_min:.2f} / {scene.frame_idr_mean:.2f}"
                if scene.frame_idr_min is not None
                else "-"
            )
            row[8:9] = ["yes" if scene.regenerated else "no", frames or "-", summary]
        table.add_row(*row)
        console.print(
            f"scene {scene.index}: {scene.status} in {scene.seconds:.1f} s"
            + (f" ({scene.error})" if scene.error else "")
        )

    if not console.is_terminal:
        console.width = max(console.width, 200)
    try:
        report = run_demo(
            out, references, on_scene=on_scene, on_mesh=on_mesh, video=video, stay=stay_up if stay else None
        )
    except (DemoError, MeshError) as err:
        console.print(f"[red]demo failed:[/red] {err}")
        raise typer.Exit(1) from None
    if not stay:  # --stay showed it before waiting
        console.print(table)
    console.print(
        f"memory: {report['history_episodes']} episodes recorded; summary: {report['story_summary'] or '-'}"
    )
    console.print(
        f"wrote {out / 'report.json'} and {out / report['contact_sheet']} in {time.perf_counter() - started:.0f} s"
    )
    if not report["ok"]:
        console.print("[red]some scenes did not succeed[/red]")
        raise typer.Exit(1)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
