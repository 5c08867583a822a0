"""Errors meant for the user: the CLI prints their message on one line and exits non-zero."""


class UserError(Exception):
    """Bad input or an unusable file; exit status 2."""

    exit_code = 2
