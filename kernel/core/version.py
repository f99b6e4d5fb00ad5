"""The installed heirloom version, recorded in artifacts and plugin listings."""

from importlib.metadata import PackageNotFoundError, version

try:
    VERSION = version("heirloom")
except PackageNotFoundError:  # running from a source tree without installing
    VERSION = "0+unknown"
