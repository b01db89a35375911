"""The emulator's cost model: modelled seconds of database work per call, reported as time.operating.

The real portal's docs measured a 50-row page of 2,387,743 leads at 49.9 s with a COUNT and
0.097 s without (keyset, ``start=-1``): counting and deep offsets cost time in proportion to the
rows they touch, a keyset page costs a small constant. We keep those proportions and scale the
per-row price down 20x, so a 100,000-deal benchmark finishes in minutes instead of hours.
"""

from __future__ import annotations

CALL = 0.002  # every call: parse, auth, build the reply
ROW_COUNTED = 1.0e-6  # each row matched by the filter when the page computes ``total``
ROW_SKIPPED = 1.0e-6  # each row an offset page (``start=N``) reads and throws away
ROW_SCANNED = 2.0e-7  # each row a non-indexed filter examines (no count, no offset)
ROW_RETURNED = 2.0e-5  # each row serialised into the reply
WRITE = 0.01  # add / update / delete of one record, history and events included


def list_page(*, matched: int, offset: int, counted: bool, scanned: int = 0, returned: int = 0) -> float:
    """Cost of one list page.

    ``matched`` rows satisfy the filter (a COUNT reads them all), ``offset`` rows are skipped,
    ``scanned`` rows were examined without an index, ``returned`` rows go into the reply.
    """
    cost = CALL + ROW_SCANNED * scanned + ROW_RETURNED * returned + ROW_SKIPPED * offset
    if counted:
        cost += ROW_COUNTED * matched
    return cost
