"""The ``heirloom`` command line: one module per command group, registered by the kernel's
commands plugin (:mod:`heirloom.cli.commands`) through ``heirloom_register_commands``.
"""
