"""The ``sepguard`` command line: engine commands (protect, evaluate) and service commands."""

import typer

from app.cli_engine import register as register_engine
from app.cli_service import register as register_service

cli = typer.Typer(
    name="sepguard",
    help="Protect image datasets from unauthorised training with Self-Ensemble Protection (SEP-FA).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
register_engine(cli)
register_service(cli)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
