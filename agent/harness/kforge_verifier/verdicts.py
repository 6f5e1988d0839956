"""Verdicts and the exception that ends a stage with one."""

PASSED = "passed"                        # precision passed (and profiling ran, for profile jobs)
COMPILE_ERROR = "compile_error"          # the candidate could not be loaded or built
RUNTIME_ERROR = "runtime_error"          # the candidate raised while running
PRECISION_MISMATCH = "precision_mismatch"  # outputs differ from the reference
TIMEOUT = "timeout"                      # ran out of time (normally assigned by the parent)
CRASHED = "crashed"                      # process/device crash (normally assigned by the parent)
RESOURCE_EXCEEDED = "resource_exceeded"  # out of memory / processes / threads
REJECTED = "rejected"                    # broke a rule (aliasing, input writes, fallback...)
INFRA_ERROR = "infra_error"              # the task, the job or this host is at fault

ALL = (PASSED, COMPILE_ERROR, RUNTIME_ERROR, PRECISION_MISMATCH, TIMEOUT, CRASHED,
       RESOURCE_EXCEEDED, REJECTED, INFRA_ERROR)


class Failure(Exception):
    """Ends the current stage with a verdict other than passed.

    input_error is non-empty only when the task/job itself is unusable (verdict infra_error).
    checks, when given, is the comparison summary for result.json.
    """

    def __init__(self, verdict, message, input_error="", checks=None):
        super().__init__(message)
        assert verdict in ALL and verdict != PASSED
        self.verdict = verdict
        self.message = message
        self.input_error = input_error
        self.checks = checks


def input_error(message):
    """A Failure for an unusable task or job (infra_error with input_error set)."""
    return Failure(INFRA_ERROR, message, input_error=message)
