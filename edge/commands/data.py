"""Placeholder: filled in by the foundation work in progress."""


def register(sub):
    """Add the subcommand."""
