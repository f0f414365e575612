"""The error a user can fix: the CLIs print its message as one line and exit with status 2."""


class UsageError(Exception):
    """A mistake the user can fix; the message says what and how, in one line."""
