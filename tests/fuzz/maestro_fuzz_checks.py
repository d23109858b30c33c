"""Schemathesis checks of Maestro's own, for the fuzzing of the management API on the local
cloud (``tests/e2e/openapi.rs`` runs it with ``SCHEMATHESIS_HOOKS=maestro_fuzz_checks``).

``no_partial_write``: a request the API refused (any 4xx) changed nothing. No DynamoDB item
write signed by one of the API's functions happened while it was served. The emulator's write
log (launcher extension 11) names each write's signer, so writes by state machines and
workers started earlier do not count, nor do the call quota's counters, which reads update
too. Requests are sent one at a time (``--workers 1``).
"""

from __future__ import annotations

import json
import os
import urllib.request
from typing import Any

import schemathesis

WRITE_LOG = os.environ["MAESTRO_MOTO_ENDPOINT"] + "/moto-api/maestro/dynamodb-writes"
API_WRITERS = frozenset(os.environ["MAESTRO_API_WRITERS"].split(","))
# Tables a read writes to as well (the call quota's counters): not the request's own state.
BOOKKEEPING_TABLES = frozenset(filter(None, os.environ.get("MAESTRO_BOOKKEEPING_TABLES", "").split(",")))

# How many writes the log held when the request under test was sent.
_writes_before = 0


def _writes() -> list[dict[str, Any]]:
    with urllib.request.urlopen(WRITE_LOG, timeout=10) as answer:
        return json.load(answer)["writes"]


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    global _writes_before
    _writes_before = len(_writes())


@schemathesis.check
def no_partial_write(ctx: Any, response: Any, case: Any) -> None:
    if not 400 <= response.status_code < 500:
        return
    written = [
        write
        for write in _writes()[_writes_before:]
        if write.get("writer") in API_WRITERS and write.get("table") not in BOOKKEEPING_TABLES
    ]
    if written:
        raise AssertionError(
            f"the request was refused ({response.status_code}) but wrote {len(written)} item(s): "
            + json.dumps(written)[:2000]
        )
