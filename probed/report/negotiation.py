"""HTTP content negotiation over the table of formats (RFC 9110 §12.5.1)."""

from __future__ import annotations

import functools

from probed.report import DEFAULT, SERVED, VERBOSE, Format


@functools.lru_cache(maxsize=256)  # clients send a handful of distinct Accept headers, again and again
def negotiate(accept: str | None, verbose: bool = False) -> Format:
    """The served format the Accept header prefers (RFC 9110 §12.5.1).

    Ties go to the more specific media range, then to the table's order, so
    `*/*` and a missing header get health+json. An Accept header that is
    garbage or names nothing probed serves also gets health+json, not a 406:
    probes read the status code, and one with an odd Accept must still work.
    """
    if verbose:
        return VERBOSE
    ranges = _media_ranges(accept or "")
    best, best_key = DEFAULT, (0.0, -1)
    for candidate in SERVED:
        key = max((_preference(media_type, ranges) for media_type in candidate.media_types), default=(0.0, -1))
        if key > best_key:
            best, best_key = candidate, key
    return best


MediaRange = tuple[str, str, float]  # type, subtype, q


def _media_ranges(accept: str) -> list[MediaRange]:
    ranges = []
    for item in accept.split(","):
        media, *params = item.strip().lower().split(";")
        kind, slash, subtype = media.strip().partition("/")
        if not slash or not kind or not subtype:
            continue  # not a media range: skip it
        quality = 1.0
        for param in params:
            name, _, value = param.strip().partition("=")
            if name.strip() == "q":
                try:
                    quality = min(max(float(value), 0.0), 1.0)
                except ValueError:
                    quality = 0.0
        ranges.append((kind, subtype.strip(), quality))
    return ranges


def _preference(media_type: str, ranges: list[MediaRange]) -> tuple[float, int]:
    """(q, specificity) of the most specific range matching `media_type`; (0, -1) if none does."""
    kind, _, subtype = media_type.partition("/")
    best: tuple[int, float] | None = None
    for range_kind, range_subtype, quality in ranges:
        if (range_kind, range_subtype) == (kind, subtype):
            specificity = 2
        elif range_kind == kind and range_subtype == "*":
            specificity = 1
        elif (range_kind, range_subtype) == ("*", "*"):
            specificity = 0
        else:
            continue
        if best is None or specificity > best[0]:
            best = (specificity, quality)
    if best is None or best[1] == 0.0:
        return (0.0, -1)
    return (best[1], best[0])
