"""The resident record's return fields: what a commissioners' return needs to know about the
person (sex, gender identity, ethnicity) and about the treatment episode (where they live,
housing, children, injecting, problem substances, referral)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from config.clock import local
from config.db import unit_of_work
from config.errors import ValidationFailed
from config.extensions import db
from unit.audit import record_event
from unit.models import Admission, Staff
from unit.schemas import EPISODE_RETURN_FIELDS, RESIDENT_RETURN_FIELDS, return_fields_of


def apply_return_fields(admission: Admission, values: dict[str, Any]) -> dict[str, Any]:
    """Set the given return fields (only those given; None clears one) on the admission and
    its resident, checked against the admission; returns what they were before."""
    before = return_fields_of(admission)
    after = {**before, **values}
    admitted_on = local(admission.admitted_at).date()
    errors = {}
    for key in ("referral_date", "first_contact_date"):
        if after.get(key) and after[key] > admitted_on:
            errors[key] = [f"After the admission ({admitted_on.isoformat()}): the referral and the "
                           "first contact come before it."]
    if after.get("referral_date") and after.get("first_contact_date") \
            and after["first_contact_date"] < after["referral_date"]:
        errors["first_contact_date"] = ["The first contact cannot be before the referral."]
    if errors:
        raise ValidationFailed("Some return fields do not fit this admission.", errors=errors)
    for key, value in values.items():
        if key in RESIDENT_RETURN_FIELDS:
            setattr(admission.resident, key, value)
        elif key in EPISODE_RETURN_FIELDS:
            setattr(admission, key, value)
    return before


@unit_of_work
def update_return_fields(actor: Staff, admission_id: int, *, values: dict[str, Any],
                         now: datetime) -> Admission:
    """Record or correct the return fields of an admission (those given; null clears one)."""
    from unit.services import get_admission

    if not values:
        raise ValidationFailed("Give at least one field to record.",
                               errors={"return_fields": ["At least one field."]})
    admission = get_admission(actor, admission_id)
    before = apply_return_fields(admission, values)
    db.session.flush()
    record_event(unit_id=actor.unit_id, actor=actor, action="admission.return_fields",
                 entity_type="admission", entity_id=admission.id,
                 resident_id=admission.resident_id, now=now,
                 before={key: before[key] for key in values}, after=values)
    return admission
