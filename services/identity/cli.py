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
#: added to the --json object when the pairs file has a `copy` column
COPY_JSON_KEYS = (
    "copy_threshold",
    "copy_pairs",
    "copy_negatives",
    "copy_precision",
    "copy_recall",
    "copy_false_positive_rate",
    "copy_similarity_p05",
    "non_copy_similarity_p95",
)


@eval_app.callback()
def _eval() -> None:
    """Evaluate the identity encoders on labelled face pairs."""


@eval_app.command("pairs")
def pairs(
    pairs_csv: Annotated[
        Path,
        typer.Argument(
            help="CSV with columns a,b,same and optionally copy (1: b is a near-copy of a); image paths relative "
            "to the CSV."
        ),
    ],
    encoder: Annotated[
        str | None, typer.Option("--encoder", help="dlib or arcface (default: from settings).")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print exactly one JSON object.")] = False,
) -> None:
    """Accuracy at the pass threshold, ROC AUC, EER, calibrated IDR percentiles and throughput; with a copy
    column, copy detection's precision, recall and false-positive rate (on same-person pairs that are not copies)."""
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
    keys = JSON_KEYS + (COPY_JSON_KEYS if "copy_pairs" in report else ())
    if json_out:
        typer.echo(json.dumps({k: report[k] for k in keys}))
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
    if "copy_pairs" in report:
        typer.echo(
            f"copy detection     precision {report['copy_precision']}, recall {report['copy_recall']} on "
            f"{report['copy_pairs']} copies; false positives {report['copy_false_positive_rate']} on "
            f"{report['copy_negatives']} same-person pairs (face-print similarity >= {report['copy_threshold']})"
        )
    for path in report["no_face_images"]:
        typer.echo(f"no face: {path}")


@eval_app.command("copy-pairs")
def copy_pairs(
    pairs_csv: Annotated[Path, typer.Argument(help="CSV with columns a,b,same (real photos).")],
    out_dir: Annotated[Path, typer.Argument(help="Folder for the copies and their pairs.csv.")],
    seed: Annotated[int, typer.Option("--seed", help="Random strengths of the copies.")] = 2,
) -> None:
    """Copies of every photo (resized, JPEG q30-90, cropped, re-coloured, rotated, pasted onto another background,
    combined) and a pairs.csv with a copy column, for `idlock eval pairs`."""
    from idlock.errors import IdlockError
    from idlock.faces.engine import IdentityEngine

    from .copy_pairs import build_copy_pairs
    from .evaluation import read_pairs
    from .settings import IdentitySettings

    try:
        read_pairs(pairs_csv)  # the same checks and messages as eval pairs
        engine = IdentityEngine(IdentitySettings())
        csv_path, pairs = build_copy_pairs(pairs_csv, out_dir, engine, seed=seed)
    except (IdlockError, ValueError, OSError) as exc:
        typer.echo(f"error: {getattr(exc, 'message', exc)}", err=True)
        raise typer.Exit(2) from exc
    copies = sum(p.copy for p in pairs)
    typer.echo(f"{csv_path}: {len(pairs)} pairs, {copies} of them copies")
