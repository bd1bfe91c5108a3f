"""``python -m initsweep [overrides]``: the ``initsweep`` command (:func:`initsweep.cli.command`)."""

from initsweep.cli import command

if __name__ == "__main__":
    command()
