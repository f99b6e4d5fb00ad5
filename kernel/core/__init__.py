"""The microkernel proper: hook specs, kind contracts, plugin host, profiles, schema, systems, the
Kernel. Domain-free and the bottom layer: it imports nothing from ``store``, ``wire`` or ``cli``."""
