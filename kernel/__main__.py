"""``python -m heirloom`` is the ``heirloom`` command."""

from heirloom.cli.main import main

main()
