"""The audit chains anchored outside the database: each unit's head (unit, event, hash, time),
signed with HMAC-SHA256 under ``AUDIT_ANCHOR_KEY``.

The chain proves that no event was changed or removed from its middle; it cannot prove on its
own that none was cut from its end, or that a whole chain was not wiped and its head reset, by
someone with write access to the database. A head kept elsewhere (a file, the managers'
e-mail) can: ``verify_anchor`` shows that each anchored head is still in its chain, unchanged.
The signature shows the anchor itself was not rewritten to match a cut chain.
"""
from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime
from typing import Any

from flask import current_app
from sqlalchemy import func, select

from config.errors import ValidationFailed
from config.extensions import db
from unit.audit import canonical_json
from unit.models import AuditChainHead, AuditEvent, Unit

FORMAT = "detox-audit-anchor/1"
BEGIN = "-----BEGIN DETOX AUDIT ANCHOR-----"
END = "-----END DETOX AUDIT ANCHOR-----"


class AnchorInvalid(ValidationFailed):
    type = "audit-anchor-invalid"
    title = "The audit anchor cannot be used"


def _key() -> bytes:
    key = current_app.config.get("AUDIT_ANCHOR_KEY") or ""
    if not key:
        raise AnchorInvalid("AUDIT_ANCHOR_KEY is not set: anchors are signed and checked with it.")
    return key.encode()


def _signature(document: dict[str, Any]) -> str:
    unsigned = {name: value for name, value in document.items() if name != "signature"}
    return hmac.new(_key(), canonical_json(unsigned).encode(), hashlib.sha256).hexdigest()


def make_anchor(now: datetime, *, unit_ids: list[int] | None = None) -> dict[str, Any]:
    """The signed head of every unit's chain (or of the units given), as of now."""
    query = (select(Unit.id, Unit.code, AuditChainHead.seq, AuditChainHead.hash, AuditEvent.id, AuditEvent.at)
             .join(AuditChainHead, AuditChainHead.unit_id == Unit.id)
             .outerjoin(AuditEvent, (AuditEvent.unit_id == Unit.id) & (AuditEvent.seq == AuditChainHead.seq))
             .order_by(Unit.code))
    if unit_ids is not None:
        query = query.where(Unit.id.in_(unit_ids))
    heads = [{"unit": code, "unit_id": unit_id, "seq": seq, "hash": hash_, "event_id": event_id,
              "at": at.isoformat() if at else None}
             for unit_id, code, seq, hash_, event_id, at in db.session.execute(query)]
    document = {"format": FORMAT, "anchored_at": now.isoformat(), "heads": heads}
    document["signature"] = _signature(document)
    return document


def anchor_text(document: dict[str, Any]) -> str:
    """The anchor as a file or an e-mail holds it: the JSON between two marker lines."""
    return f"{BEGIN}\n{json.dumps(document, indent=2, sort_keys=True)}\n{END}\n"


def read_anchor(text: str) -> dict[str, Any]:
    """The anchor in a file (its JSON, or an e-mail or text holding the marked block)."""
    if BEGIN in text:
        text = text.split(BEGIN, 1)[1].split(END, 1)[0]
    try:
        document = json.loads(text)
    except ValueError:
        raise AnchorInvalid("The anchor file holds no anchor (not JSON).") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT \
            or not isinstance(document.get("heads"), list):
        raise AnchorInvalid(f"The anchor file is not a {FORMAT} document.")
    return document


def verify_anchor(document: dict[str, Any]) -> list[tuple[str, bool, str]]:
    """(unit code, proven, what was found) for each head the anchor holds.

    Proven: the signature matches (the anchor is as it was made) and the unit's chain still
    holds the anchored event with the anchored hash. (That the chain links up from its start
    to that event and on to its head now is ``verify_chain``'s proof.)
    """
    if not hmac.compare_digest(_signature(document), str(document.get("signature", ""))):
        return [("(anchor)", False, "the anchor's signature does not match AUDIT_ANCHOR_KEY: it "
                                    "was altered, or signed with another key")]
    results = []
    for head in document["heads"]:
        code, seq = str(head.get("unit")), int(head.get("seq", 0))
        unit = db.session.get(Unit, head.get("unit_id"))
        if unit is None or unit.code != code:
            results.append((code, False, "the anchored unit no longer exists"))
            continue
        last = db.session.scalar(select(func.max(AuditEvent.seq)).where(AuditEvent.unit_id == unit.id)) or 0
        stored = db.session.scalar(select(AuditEvent.hash).where(AuditEvent.unit_id == unit.id,
                                                                 AuditEvent.seq == seq))
        if seq == 0:
            results.append((code, True, "anchored before its first event"))
        elif stored is None:
            results.append((code, False, f"the anchored event {seq} of {document['anchored_at']} "
                                         f"is gone: the chain now ends at {last} (events cut from its end, "
                                         "or the chain wiped)"))
        elif stored != head.get("hash"):
            results.append((code, False, f"event {seq} is not the anchored one (its hash differs)"))
        else:
            results.append((code, True, f"reaches the anchored event {seq} of {document['anchored_at']}"))
    return results
