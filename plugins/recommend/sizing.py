"""The item x item products of a catalogue, and the memory a fit of one needs.

``A @ A.T`` in one call takes BLAS's SYRK path, which the OpenBLAS numpy bundles
(scipy-openblas 0.3.31) crashes in with SIGSEGV from about 20,000 rows: ``heirloom train``
died with exit 139 and nothing printed on a catalogue of 21,000 items (checker h345 F2). The
products here go in row blocks, which BLAS computes as GEMM. What a fit holds is several dense
item x item float64 matrices at once, so a catalogue past what memory allows is refused
before it is read, naming the size, the memory it needs and what there is.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from heirloom_plugins.memory_room import MIB, refuse_unless_room
from heirloom_plugins.recommend.records import ITEM

#: Rows per product of ``add_gram`` (a block with fewer rows than the result is GEMM, never SYRK).
ROW_BLOCK = 4096
#: Dense item x item float64 matrices a train holds at its peak (co-occurrence, text kernel, the
#: solve's inverse and weights, the text columns, the blend, then evaluation's cold-start refit) and
#: OVERHEAD_MIB besides (the histories, the text tower, evaluation's scores). The peak resident memory
#: (``/usr/bin/time -v``) less what the process held at the check: 726 and 2,896 MiB at 3,000 and 6,000
#: items with fixed grids (10.5 x items^2 x 8 bytes + 3 MiB), 812 MiB at 3,000 with the grid search
#: (11.8 x), MovieLens' 1,682 items 252 (fixed grids) and 263 MiB (the grid search, 12.2 x). 9 copies,
#: the figure before, let a train the check passed fail on its budget after the fit (checker v9 F1);
#: these are rounded up from the largest.
COPIES = 12
OVERHEAD_MIB = 48


def add_gram(rows: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out += rows @ rows.T`` (symmetric) in blocks of ``ROW_BLOCK`` rows, each block's product with the rows
    from it on only, mirrored below the diagonal: the work of one SYRK, not twice it. Returns ``out``."""
    for start in range(0, len(rows), ROW_BLOCK):
        end = min(start + ROW_BLOCK, len(rows))
        product = rows[start:end] @ rows[start:].T  # (block, rows from start): GEMM but for the last square block
        out[start:end, start:] += product
        out[end:, start:end] += product[:, end - start :].T
    return out


def fit_bytes(items: int) -> int:
    """The memory a fit on a catalogue of ``items`` needs beyond what the process holds when it asks."""
    return COPIES * items * items * 8 + OVERHEAD_MIB * MIB


def largest_fitting(room: int) -> int:
    """The most items whose :func:`fit_bytes` is within ``room`` bytes (0 where none fit): the same formula, so
    "at most about N items fit" is a catalogue the check lets through."""
    return math.isqrt(max(room - OVERHEAD_MIB * MIB, 0) // (COPIES * 8))  # items² x COPIES x 8 <= room - overhead


def refuse_if_too_big(items: int, resources: Any, what: str) -> None:
    """Raise ResourceExhaustedError when a fit on ``items`` items cannot fit in what is available."""
    needed = fit_bytes(items)
    refuse_unless_room(
        needed,
        resources,
        lambda room, source: (
            f"{what}: a catalogue of {items:,} items needs about {needed / MIB:,.0f} MiB to fit ({COPIES} dense "
            f"{items:,} x {items:,} float64 matrices and {OVERHEAD_MIB} MiB besides), and {room / MIB:,.0f} MiB is "
            f"available ({source}): at most about {largest_fitting(room):,} items fit here; train on a machine "
            "with more memory or a smaller catalogue"
        ),
    )


def sized(records: Iterable[Any], check: Callable[[int], None]) -> Iterator[Any]:
    """``records`` unchanged; when the first interaction follows item records, ``check`` gets how many
    distinct items those listed (the catalogue is at least that), before the interactions are read."""
    ids: set[Any] | None = set()
    for record in records:
        if ids is not None and isinstance(record, Mapping):
            if record.get("type") == ITEM:
                ids.add(record.get("item"))
            elif ids:
                check(len(ids))
                ids = None
        yield record
