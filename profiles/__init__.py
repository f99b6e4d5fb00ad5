"""The profiles heirloom ships, installed as package data of ``heirloom_plugins``."""
