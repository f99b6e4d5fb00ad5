"""Hashed word and character n-gram features and the L2-regularised softmax regression over
them, shared by the built-in plugins (the ``text-classifier`` model is built from them; the
``encoder-classifier`` fuses them with its encoder). Not a plugin: it registers nothing.
"""
