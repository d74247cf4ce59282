"""Errors the CLI turns into one line on stderr and exit status 2."""


class UserError(Exception):
    """A bad input or request from the user: one clear line, no traceback."""
