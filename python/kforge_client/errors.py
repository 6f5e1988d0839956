"""Errors of the kforge client: one class per kind of failure the operator API reports.

Every failure the coordinator answers is ``{"error": "<what went wrong and what to do>"}``
with a status code (schema/api.md, "Errors"); the client raises the matching subclass of
:class:`KforgeError` with that message and the status. A coordinator that cannot be reached
at all raises :class:`Unreachable` (``status`` is ``None``).
"""


class KforgeError(Exception):
    """A request failed. ``message`` is what to tell a person, ``status`` the HTTP status
    (``None`` when no answer came), ``server_message`` the server's own ``error`` text."""

    status = None

    def __init__(self, message, status=None, server_message=None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.server_message = server_message if server_message is not None else message

    def __str__(self):
        return self.message


class BadRequest(KforgeError):
    """400: a malformed body or parameter, or an invalid task (the message names the field
    and what is valid)."""

    status = 400


class Unauthorized(KforgeError):
    """401: the coordinator needs its API token, or refused the one sent."""

    status = 401


class NotFound(KforgeError):
    """404: an unknown campaign, task, agent or path."""

    status = 404


class Conflict(KforgeError):
    """409: the object's state does not allow it (cancelling a finished task)."""

    status = 409


class ServerError(KforgeError):
    """500 (a store failure) or any other status the API does not name."""

    status = 500


class Unavailable(KforgeError):
    """503: the coordinator is stopping."""

    status = 503


class Unreachable(KforgeError):
    """No answer: nothing listens at the URL, the host is unknown, or the request timed out."""

    status = None


_BY_STATUS = {400: BadRequest, 401: Unauthorized, 404: NotFound, 409: Conflict, 503: Unavailable}


def error_for_status(status):
    """The :class:`KforgeError` subclass for an HTTP status."""
    return _BY_STATUS.get(status, ServerError)
