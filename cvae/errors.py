"""The exception every user-facing failure is turned into."""


class CvaeError(Exception):
    """A problem with the user's input; the CLI prints it as one line."""
