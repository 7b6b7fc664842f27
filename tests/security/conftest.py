"""The service fixtures of tests/app (``client``, ``tokens``), shared with the security tests."""

from tests.app.conftest import client, tokens  # noqa: F401
