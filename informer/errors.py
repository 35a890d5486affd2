"""User-facing errors: one clear line naming the file or field and what was expected."""


class InformerError(ValueError):
    """Bad input from the user (file, config field, payload). CLIs print it as one line."""


def first_line(err: BaseException) -> str:
    """The first non-empty line of an exception's message (its type name when it has none)."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0]
