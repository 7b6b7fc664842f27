"""Engine commands: protect, evaluate."""

import typer


def register(cli: typer.Typer) -> None:
    """Add the engine commands to the root CLI."""
