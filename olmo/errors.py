"""User-facing errors: the CLI prints them as one line, without a traceback."""


class OlmoError(Exception):
    """Bad input or a state the user must fix. The message names the file/key and what to do."""

    exit_code = 2
