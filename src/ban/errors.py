"""The one error type that the `ban` command turns into a single line and exit code 2."""

from __future__ import annotations


class BanError(Exception):
    """A problem with the user's input: the message names the problem and the fix."""

    exit_code = 2
