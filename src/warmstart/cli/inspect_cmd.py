"""``warmstart inspect``: what a checkpoint holds, without running anything from it."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from ..weights import load_checkpoint
from .output import console


def describe(path: Path) -> dict:
    ckpt = load_checkpoint(path)
    cfg = ckpt.config
    trainable = cfg.get("trainable", {})
    order = {name: i for i, name in enumerate(trainable)}  # the model's own parameter order
    params = [
        {"name": k, "shape": list(v.shape), "numel": v.numel(), "trainable": trainable.get(k, "buffer")}
        for k, v in sorted(ckpt.state_dict.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0]))
    ]
    prep = cfg.get("preprocessing") or {}
    return {
        "path": str(path),
        "format": cfg["format"],
        "weights_sha256": ckpt.sha256,
        "model": cfg.get("model", {}),
        "parameters": params,
        "preprocessing": {
            "target": prep.get("target"),
            "categorical": {c: len(v) for c, v in prep.get("categorical", {}).items()},
            "numeric": list(prep.get("numeric", {})),
            "ignored": prep.get("ignored", []),
        },
        "lineage": cfg.get("lineage", {}),
        "training": cfg.get("training", {}),
        "metrics": cfg.get("metrics", {}),
        "versions": cfg.get("versions", {}),
    }


@click.command("inspect")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def command(checkpoint, as_json) -> None:
    """Architecture, parameters (trainable or frozen), preprocessing, lineage and metrics.

    The weights are verified against their recorded sha256; nothing in the directory
    is executed.

    \b
    warmstart inspect runs/eu
    warmstart inspect runs/eu --json
    """
    info = describe(checkpoint)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    model = info["model"]
    console.print(f"[bold]{checkpoint}[/bold]  ({info['format']}, weights sha256 {info['weights_sha256'][:16]}...)")
    if model:
        console.print(f"model {model.get('kind', '?')}: hidden {model.get('hidden')}, "
                      f"{model.get('n_numeric', 0)} numeric inputs, embeddings {model.get('embedding_dims', {})}")
    table = Table(title="parameters", title_justify="left")
    for col in ("name", "shape", "numel", "trainable"):
        table.add_column(col, justify="right" if col == "numel" else "left")
    for p in info["parameters"]:
        table.add_row(p["name"], str(p["shape"]), f"{p['numel']:,}", p["trainable"])
    console.print(table)
    prep = info["preprocessing"]
    if prep["target"]:
        console.print(f"target {prep['target']} (log, standardized); categorical "
                      + ", ".join(f"{c} ({n})" for c, n in prep["categorical"].items())
                      + f"; numeric {', '.join(prep['numeric']) or '-'}; ignored {', '.join(prep['ignored']) or '-'}")
    lineage = info["lineage"]
    if lineage.get("parent"):
        console.print(f"lineage: fine-tuned from weights {lineage['parent'][:16]}... "
                      f"({lineage.get('parent_path', '?')}) with strategy {lineage.get('strategy')}")
    else:
        console.print("lineage: trained from scratch (no parent)")
    tr = info["training"]
    if tr:
        console.print("training: " + ", ".join(f"{k} {v}" for k, v in tr.items() if k in
                                              ("command", "strategy", "lr", "epochs_run", "best_epoch", "seed", "rows")))
    val = info["metrics"].get("validation")
    if val:
        console.print(f"validation: MAE {val['mae']:,.0f}, RMSE {val['rmse']:,.0f}, R^2 {val['r2']:.3f} on {val['rows']} rows")
