"""Service commands: serve, worker, db, token."""

import typer


def register(cli: typer.Typer) -> None:
    """Add the service commands to the root CLI."""
