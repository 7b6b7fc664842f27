"""A route class that caps request bodies while they stream in, before any form parsing finishes."""

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request, Response, status
from fastapi.routing import APIRoute
from starlette.types import Message, Receive

from app.core.config import get_settings

FORM_OVERHEAD_BYTES = 1024 * 1024  # room for the other form fields and multipart boundaries


def too_large(limit: int) -> HTTPException:
    """The 413 for an upload over ``limit`` bytes."""
    return HTTPException(
        status.HTTP_413_CONTENT_TOO_LARGE,
        f"upload is larger than the limit of {limit} bytes (SEPGUARD_MAX_UPLOAD_BYTES)",
    )


def limited_receive(receive: Receive, max_body: int, limit: int) -> Receive:
    """``receive`` that raises a 413 as soon as more than ``max_body`` body bytes have arrived."""
    received = 0

    async def wrapped() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > max_body:
                raise too_large(limit)
        return message

    return wrapped


class UploadLimitRoute(APIRoute):
    """Rejects bodies over the upload limit from the Content-Length header or while they stream."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def limited(request: Request) -> Response:
            if request.method in ("POST", "PUT", "PATCH"):
                limit = get_settings().max_upload_bytes
                max_body = limit + FORM_OVERHEAD_BYTES
                length = request.headers.get("content-length", "")
                if length.isdigit() and int(length) > max_body:
                    raise too_large(limit)
                request = Request(request.scope, limited_receive(request.receive, max_body, limit))
            return await handler(request)

        return limited
