"""``python -m app``: the ``sepguard`` command line."""

from app.cli import main

main()
