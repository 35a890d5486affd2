"""User-facing errors: one clear line naming the file or field and what was expected."""


class InformerError(ValueError):
    """Bad input from the user (file, config field, payload). CLIs print it as one line."""
