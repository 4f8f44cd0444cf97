"""The error every command raises for a problem the user can fix (printed as one line, exit 2).

Its own module, so that a subcommand living in a component (the load generator's) can raise it
without importing the CLI that dispatches to it.
"""


class CliError(Exception):
    """A problem the user can fix; printed as one line, exit status 2."""
