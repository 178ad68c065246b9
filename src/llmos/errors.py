"""One place for llmos errors.

Every fault raised by llmos derives from :class:`LLMOSError`. Each subclass
carries a stable machine-readable ``code`` and an HTTP status that only the
``api`` package uses when it maps an error to a response body of the shape
``{"error": {"message", "type", "code"}}``.
"""

from __future__ import annotations


class LLMOSError(Exception):
    """Base of every llmos fault."""

    code: str = "internal_error"
    http_status: int = 500

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    @property
    def type(self) -> str:
        return type(self).__name__


class ValidationError(LLMOSError):
    """User input is malformed or impossible (bad spec, bad parameter)."""

    code = "invalid_request"
    http_status = 400


class AuthenticationError(LLMOSError):
    """No credentials, or credentials that do not match any token."""

    code = "unauthenticated"
    http_status = 401


class PermissionDenied(LLMOSError):
    """The caller is known but its role does not allow the action."""

    code = "permission_denied"
    http_status = 403


class NotFound(LLMOSError):
    """The named object does not exist (or belongs to another tenant)."""

    code = "not_found"
    http_status = 404


class Conflict(LLMOSError):
    """The action conflicts with the object's current state."""

    code = "conflict"
    http_status = 409


class IllegalTransition(Conflict):
    """A state machine was asked for a transition it does not allow."""

    code = "illegal_transition"


class ResourceExhausted(LLMOSError):
    """A budget (memory, KV cache, quota) cannot hold what was asked."""

    code = "resource_exhausted"
    http_status = 429


class BackendError(LLMOSError):
    """An execution backend failed to launch, stop or observe a task."""

    code = "backend_error"
    http_status = 502


class IntegrityError(LLMOSError):
    """Stored data does not match its recorded checksum."""

    code = "integrity_error"
    http_status = 500
