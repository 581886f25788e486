"""The one exception type for mistakes a user can fix: the CLI prints it in one sentence and exits 2."""


class UserError(Exception):
    """A bad config, a missing file, an unusable input: the message names the field or file."""
