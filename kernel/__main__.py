"""``python -m heirloom`` is the ``heirloom`` command."""

from heirloom.cli import main

main()
