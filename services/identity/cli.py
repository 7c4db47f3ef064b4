"""`idlock eval ...`: evaluation commands of the identity service (the lead mounts `eval_app` on the main CLI)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

eval_app = typer.Typer(help="Evaluate the identity encoders on labelled face pairs.", no_args_is_help=True)

#: keys of the --json object, in order (anything else the evaluation computes is shown in the text report only)
JSON_KEYS = (
    "pairs",
    "scored",
    "no_face",
    "accuracy",
    "roc_auc",
    "eer",
    "same_idr_p05",
    "same_idr_p50",
    "diff_idr_p50",
    "diff_idr_p95",
    "faces_per_s",
)


@eval_app.callback()
def _eval() -> None:
    """Evaluate the identity encoders on labelled face pairs."""


@eval_app.command("pairs")
def pairs(
    pairs_csv: Annotated[
        Path, typer.Argument(help="CSV with columns a,b,same; image paths relative to the CSV.")
    ],
    encoder: Annotated[
        str | None, typer.Option("--encoder", help="dlib or arcface (default: from settings).")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print exactly one JSON object.")] = False,
) -> None:
    """Accuracy at the pass threshold, ROC AUC, EER, calibrated IDR percentiles and throughput."""
    from idlock.errors import IdlockError
    from idlock.faces.engine import IdentityEngine

    from .evaluation import evaluate_pairs
    from .settings import IdentitySettings

    try:
        settings = IdentitySettings() if encoder is None else IdentitySettings(encoder=encoder)
        report = evaluate_pairs(pairs_csv, IdentityEngine(settings))
    except (IdlockError, ValueError) as exc:
        typer.echo(f"error: {getattr(exc, 'message', exc)}", err=True)
        raise typer.Exit(2) from exc
    if json_out:
        typer.echo(json.dumps({k: report[k] for k in JSON_KEYS}))
        return
    typer.echo(f"encoder            {report['encoder']}")
    typer.echo(
        f"pairs              {report['pairs']} (scored {report['scored']}, images without a face "
        f"{report['no_face']})"
    )
    typer.echo(
        f"accuracy           {report['accuracy']} (calibrated IDR >= {report['pass_threshold']} = same)"
    )
    typer.echo(f"ROC AUC            {report['roc_auc']}")
    typer.echo(f"EER                {report['eer']} (raw cosine threshold {report['eer_raw_threshold']})")
    typer.echo(f"same IDR p05 / p50 {report['same_idr_p05']} / {report['same_idr_p50']}")
    typer.echo(f"diff IDR p50 / p95 {report['diff_idr_p50']} / {report['diff_idr_p95']}")
    typer.echo(f"throughput         {report['faces_per_s']} faces/s (decode + detect + embed)")
    for path in report["no_face_images"]:
        typer.echo(f"no face: {path}")
