"""``warmstart convert``: a whole pickled model you made yourself -> a safe weights file."""

from __future__ import annotations

from pathlib import Path

import click

from ..weights import convert_trusted_pickle
from .output import console


@click.command("convert")
@click.argument("pickled", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="The .safetensors file to write.")
@click.option("--trust-pickle", is_flag=True,
              help="Run the file's unpickling code. Only for a file you made yourself.")
def command(pickled, out, trust_pickle) -> None:
    """Convert a model saved with torch.save(model) into a .safetensors state dict.

    Without --trust-pickle this only lists what the file would import, and refuses.

    \b
    warmstart convert model.pt --out model.safetensors                 # inspect, refuse
    warmstart convert model.pt --out model.safetensors --trust-pickle  # convert
    """
    path, needed = convert_trusted_pickle(pickled, out, trust_pickle=trust_pickle)
    console.print(f"allowed {len(needed)} global(s) for this one load: {', '.join(needed) or '-'}")
    console.print(f"wrote {path}; use it with `warmstart finetune --from {path}`")
