"""Options several benchmark scripts take, said once."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

#: The shared data sets beside the repository's folder (``../shared/data``).
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def add_data_option(parser: argparse.ArgumentParser) -> None:
    """``--data``: the data root, ``$HEIRLOOM_DATA`` else ``../shared/data``."""
    parser.add_argument(
        "--data",
        type=Path,
        default=Path(os.environ.get("HEIRLOOM_DATA", SHARED_DATA)),
        help="data root (default: $HEIRLOOM_DATA, else ../shared/data)",
    )
