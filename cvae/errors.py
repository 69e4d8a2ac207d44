"""The exception every user-facing failure is turned into."""


class CvaeError(Exception):
    """A problem with the user's input; the CLI prints it as one line."""


def first_line(error):
    """The first line of an exception's message (its type name if it has none)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
