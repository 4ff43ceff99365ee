"""The one exception type for bad input that the user can fix.

Its message is a single sentence meant for a person: the CLI prints it on one line and exits 2,
the window shows it in a dialog. Anything else escaping is a bug.
"""


class UserError(Exception):
    """Bad input (file, checkpoint, argument) described in one clear sentence."""
