"""Exceptions shared across bopask."""


class BopFormatError(ValueError):
    """A BOP file is missing, unreadable or lacks a key; the message names file and key."""

    def __init__(self, path, message, key=None):
        self.path = str(path)
        self.key = key
        where = f'{self.path}' + (f' [key {key!r}]' if key is not None else '')
        super().__init__(f'{where}: {message}')


class AnswerParseError(ValueError):
    """Model text that cannot be read as the expected answer."""
