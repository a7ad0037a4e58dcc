"""The one base of every error chronicle reports to a user, and its exit code.

The command line turns any ``ChronicleError`` into one line on stderr and its
``exit_code``: 1 a check failed (verify found damage, a projection failed),
2 bad usage or input (nothing was written), 3 the workspace or storage is
unusable. Stdlib only: the command line imports it before anything heavy.
"""

from __future__ import annotations

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_STORE = 0, 1, 2, 3


class ChronicleError(Exception):
    """Base of every reported error; subclasses set the exit code."""

    exit_code = EXIT_STORE
    #: Printed before the message: bad input says "error:", a failed check or an unusable store does not.
    label = ""


class UsageError(ChronicleError):
    """Bad arguments or input; nothing was written."""

    exit_code = EXIT_USAGE
    label = "error: "


class CheckFailed(ChronicleError):
    """A check or a build failed; what was recorded is unchanged."""

    exit_code = EXIT_FAILED
