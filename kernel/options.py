"""Click options for plugin commands (``heirloom_register_commands``) that the kernel's own
commands share, so the same option reads the same in every ``--help``.

- ``listen_options(default_port)``: ``--host`` (default 127.0.0.1) and ``--port`` of a
  command that serves HTTP, as ``heirloom gateway`` and ``heirloom ui`` do.
"""

from heirloom.cli.options import listen_options

__all__ = ["listen_options"]
