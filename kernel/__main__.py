"""``python -m heirloom`` is the ``heirloom`` command."""

from heirloom.cli.entry import main

main()
