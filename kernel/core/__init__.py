"""The microkernel proper: hook specs, kind contracts, the plugin host, profiles and their
schema, systems and the :class:`~heirloom.core.kernel.Kernel`.

Domain-free and the bottom layer: it imports nothing from ``store``, ``wire`` or ``cli``.
"""
