"""``python -m initsweep [overrides]``: the ``initsweep`` command (:func:`initsweep.cli.main.main`)."""

from initsweep.cli.main import main

if __name__ == "__main__":
    main()
