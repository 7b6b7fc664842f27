"""Errors the engine raises for bad input. Messages name the problem and the file."""


class DatasetError(ValueError):
    """The uploaded dataset cannot be used (bad archive, bad image, too few classes...)."""

    def __init__(self, message: str, files: list[str] | None = None) -> None:
        super().__init__(message)
        self.files = files or []


class LimitExceeded(DatasetError):
    """A configured size limit (bytes, file count, pixels, compression ratio) was exceeded."""


class OutOfDiskSpace(OSError):
    """The server's disk is full (or below its configured free-space reserve)."""

    def __init__(self, message: str = "the server is out of disk space") -> None:
        super().__init__(message)
