"""A group's answer on the wire: its body and HTTP code, made once per answer.

The probes' thread (probed/lane.py) and aiohttp's handlers (probed/web.py)
both answer a group's endpoint from this table, so the two send the same
bytes; what the answer is, the store decides (`Store.group_status`).
"""

from __future__ import annotations

import json

from probed.groups import EVERY_ANSWER, GroupStatus
from probed.model import Status
from probed.report import CONTENT_TYPE

HEADERS = {"Cache-Control": "no-store"}
HEALTH_HEADERS = {**HEADERS, "Content-Type": CONTENT_TYPE}
_STATUS_BODIES = {status: json.dumps({"status": status.value}).encode() for status in Status}


def http_status(status: Status) -> int:
    return 503 if status is Status.FAIL else 200


def _group_body(answer: GroupStatus) -> bytes:
    """{"status": ...}, and for a reason that is none of the checks (probed is
    shutting down, the scheduler stopped) what ?verbose says of it, as `output`."""
    if answer.note is None:
        return _STATUS_BODIES[answer.status]
    return json.dumps({"status": answer.status.value, "output": answer.note}).encode()


# Every answer a group can give: the probes' paths allocate nothing to answer.
GROUP_ANSWERS: dict[GroupStatus, tuple[bytes, int]] = {
    answer: (_group_body(answer), http_status(answer.status)) for answer in EVERY_ANSWER
}
