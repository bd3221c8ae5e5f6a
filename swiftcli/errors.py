"""Typed errors: the library raises them, only the CLI formats them."""

from __future__ import annotations


class SwiftError(Exception):
    """A user-facing error with a one-line message and an optional hint on what to do next."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class UsageError(SwiftError):
    """Options that contradict each other or cannot be parsed."""

    exit_code = 2


class ModelNotFoundError(SwiftError):
    """A model type, path or hub id that cannot be resolved to weights on disk."""


class CheckpointError(SwiftError):
    """A --ckpt_dir that holds neither weights nor an adapter, or whose args cannot be read."""


class TemplateError(SwiftError):
    """A template that does not exist or cannot render the request (e.g. history on a single-round one)."""


class EngineError(SwiftError):
    """An engine that cannot start or cannot serve a request as configured."""


class MissingDependencyError(SwiftError):
    """An optional package that the chosen feature needs is not installed."""


class InputError(SwiftError):
    """Bad user data: a dataset file, a row, a request field."""


class ContextLengthError(InputError):
    """A prompt plus max_new_tokens that does not fit the model's context window."""


class OverloadedError(EngineError):
    """The engine's queue is full: the request may be retried later."""


class EngineUnavailableError(EngineError):
    """The engine has stopped (its process died): no request can be served until a restart."""


class DiskSpaceError(SwiftError):
    """Not enough free disk space for a download or an output."""
