"""The artifact store layer: versions of trained models with lineage, and training.

Imports only :mod:`heirloom.core`. The kernel reaches it through its own plugin
(:mod:`heirloom.store.plugin`), so the core never imports this layer.
"""
