"""The ``warmstart`` command group: bad input ends in one readable paragraph, not a traceback."""

from __future__ import annotations

import sys
import textwrap

import click

from .. import __version__
from ..errors import WarmstartError


class WarmstartGroup(click.Group):
    """A click group that turns ``WarmstartError`` into a short message and exit code 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except WarmstartError as exc:
            if ctx.params.get("debug"):
                raise
            _fail(f"{exc}", 1)
        except KeyboardInterrupt:
            _fail("interrupted; nothing half-written was left behind", 130)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except Exception as exc:  # noqa: BLE001 - the last line of defence for users
            if ctx.params.get("debug"):
                raise
            _fail(
                f"unexpected {type(exc).__name__}: {exc}. This is a bug in warmstart; "
                "run again with --debug for the traceback and report it with `warmstart env`.",
                3,
            )


def _fail(message: str, code: int) -> None:
    click.echo(textwrap.fill("Error: " + message, width=100, break_long_words=False), err=True)
    sys.exit(code)


@click.group(cls=WarmstartGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--debug", is_flag=True, help="Show the full traceback on errors.")
@click.version_option(__version__, prog_name="warmstart")
def cli(debug: bool) -> None:
    """Reuse what a trained network knows: initialize, transfer, fine-tune, and measure it.

    \b
    warmstart pretrain salaries --target salary_in_usd --rows company_location=US --out runs/us
    warmstart finetune salaries --from runs/us --rows company_location=@europe \\
        --strategy freeze:1 --lr 1e-4 --out runs/eu
    warmstart evaluate runs/eu salaries --rows company_location=@europe
    """


def _register() -> None:
    from . import convert, demo, env, evaluate, finetune, init_report, inspect_cmd, predict, pretrain, study

    for module in (pretrain, finetune, evaluate, predict, study, inspect_cmd, init_report, convert, demo, env):
        cli.add_command(module.command)


_register()


def main() -> None:
    cli(prog_name="warmstart")
