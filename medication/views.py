"""The medication package's JSON API."""
from __future__ import annotations

from config.api import ApiBlueprint

from config.clock import now
from config.idempotency import idempotent
from medication import emar, orders
from medication import register as cd_register
from medication.schemas import (
    AdministrationIn,
    AdministrationSchema,
    ChangeOrderIn,
    DueDosesSchema,
    GivenSchema,
    OrderDetailSchema,
    OrderIn,
    OrderSchema,
    RegisterEntryIn,
    RegisterEntrySchema,
    RegisterSchema,
    StockCheckIn,
    StopIn,
)
from unit.auth import ALL_ROLES, CLINICAL_STAFF, PRESCRIBERS, current_staff, roles_required

blp = ApiBlueprint("medication_api", __name__, url_prefix="/api/v1",
                description="Medication orders, the eMAR and the controlled-drug register")


def _order_view(ordered) -> dict:
    order = ordered.order
    fields = (name for name in OrderSchema._declared_fields)
    return {**{name: getattr(order, name) for name in fields}, "scheduled": order.scheduled,
            "warnings": ordered.warnings}


@blp.route("/admissions/<int:admission_id>/orders", methods=["POST"])
@roles_required(CLINICAL_STAFF)
@blp.arguments(OrderIn())
@idempotent
@blp.response(201, OrderDetailSchema)
def create_order(body, admission_id):
    """Prescribe (doctor or GP), or record a GP's phone order (nurse, read back): fixed, prn or induction."""
    return _order_view(orders.create_order(current_staff(), admission_id, body, now=now()))


@blp.route("/admissions/<int:admission_id>/orders", methods=["GET"])
@roles_required(ALL_ROLES)
@blp.response(200, OrderSchema(many=True))
def list_orders(admission_id):
    """Every version of every order of an admission, newest first."""
    return orders.list_orders(current_staff(), admission_id)


@blp.route("/orders/<int:order_id>", methods=["GET"])
@roles_required(ALL_ROLES)
@blp.response(200, OrderDetailSchema)
def get_order(order_id):
    """One order with its scheduled doses."""
    return _order_view(orders.Ordered(orders.get_order(current_staff(), order_id), []))


@blp.route("/orders/<int:order_id>/stop", methods=["POST"])
@roles_required(PRESCRIBERS)
@blp.arguments(StopIn())
@idempotent
@blp.response(200, OrderSchema)
def stop_order(body, order_id):
    """Stop an order (doctor or GP); it is kept, marked stopped."""
    return orders.stop_order(current_staff(), order_id, reason=body["reason"], now=now())


@blp.route("/orders/<int:order_id>/change", methods=["POST"])
@roles_required(PRESCRIBERS)
@blp.arguments(ChangeOrderIn())
@idempotent
@blp.response(201, OrderDetailSchema)
def change_order(body, order_id):
    """Change an order: a new version supersedes it (never an edit in place)."""
    reason = body.pop("reason")
    return _order_view(orders.change_order(current_staff(), order_id, body, reason=reason, now=now()))


@blp.route("/orders/<int:order_id>/countersign", methods=["POST"])
@roles_required(PRESCRIBERS)
@blp.response(200, OrderSchema)
def countersign(order_id):
    """The prescriber countersigns a phone order."""
    return orders.countersign_order(current_staff(), order_id, now=now())


@blp.route("/orders/<int:order_id>/administrations", methods=["POST"])
@roles_required(CLINICAL_STAFF)
@blp.arguments(AdministrationIn())
@idempotent
@blp.response(201, GivenSchema)
@blp.alt_response(409, description="A safety check refused the dose (`check` says which)")
def administer(body, order_id):
    """Record a dose given, refused, withheld or omitted (Idempotency-Key required)."""
    given = emar.record_administration(current_staff(), order_id, now=now(), **body)
    administration = given.administration
    fields = (name for name in AdministrationSchema._declared_fields if name != "reason")
    return {**{name: getattr(administration, name) for name in fields},
            "reason_code": administration.reason_code, "escalation": given.escalation}


@blp.route("/admissions/<int:admission_id>/administrations", methods=["GET"])
@roles_required(ALL_ROLES)
@blp.response(200, AdministrationSchema(many=True))
def list_administrations(admission_id):
    """The admission's eMAR, newest first."""
    return emar.list_administrations(current_staff(), admission_id)


@blp.route("/due-doses", methods=["GET"])
@roles_required(ALL_ROLES)
@blp.response(200, DueDosesSchema)
def due_doses():
    """Scheduled doses due now or overdue, and PRN doses with whether they may be given now and why."""
    return emar.due_doses(current_staff(), now())


@blp.route("/cd-register/<drug>", methods=["GET"])
@roles_required(ALL_ROLES)
@blp.response(200, RegisterSchema)
def register(drug):
    """A drug's controlled-drug register on this unit, with its running balance."""
    return cd_register.register_book(current_staff(), drug)


@blp.route("/cd-register/<drug>/entries", methods=["POST"])
@roles_required(CLINICAL_STAFF)
@blp.arguments(RegisterEntryIn())
@idempotent
@blp.response(201, RegisterEntrySchema)
def register_entry(body, drug):
    """A receipt (with supplier), return, destruction or witnessed correction."""
    return cd_register.record_register_entry(current_staff(), drug, now=now(), **body)


@blp.route("/cd-register/<drug>/stock-checks", methods=["POST"])
@roles_required(CLINICAL_STAFF)
@blp.arguments(StockCheckIn())
@idempotent
@blp.response(201, RegisterEntrySchema)
def stock_check(body, drug):
    """Two staff count the stock; a difference from the balance is escalated to the manager."""
    return cd_register.record_stock_check(current_staff(), drug, now=now(), **body)
