"""heirloom's built-in plugins, registered through the ``heirloom`` entry-point group
exactly as third-party plugins are."""
