"""The one exception type of the dataset layer (its own module so every other module can raise it)."""


class DatasetError(ValueError):
    """A dataset cannot be opened as asked; the message says what is wrong and how to fix it."""
