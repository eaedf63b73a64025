"""NEWS2: the National Early Warning Score 2 (physiology, for every resident)."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from monitoring.scales.base import Band, Choice, Item, PointsTable, Scale, SingleItemRule

# Royal College of Physicians, National Early Warning Score 2 (2017), chart 1; docs/clinical-rules.md s1.

NEWS2_RESPIRATION = PointsTable(((None, 8, 3), (9, 11, 1), (12, 20, 0), (21, 24, 2), (25, None, 3)))
NEWS2_SPO2_SCALE_1 = PointsTable(((None, 91, 3), (92, 93, 2), (94, 95, 1), (96, None, 0)))
# RCP chart 1, SpO2 scale 2 (target 88-92%): on air, 93 and above scores 0.
NEWS2_SPO2_SCALE_2_AIR = PointsTable(((None, 83, 3), (84, 85, 2), (86, 87, 1), (88, None, 0)))
NEWS2_SPO2_SCALE_2_OXYGEN = PointsTable(((None, 83, 3), (84, 85, 2), (86, 87, 1), (88, 92, 0),
                                         (93, 94, 1), (95, 96, 2), (97, None, 3)))
NEWS2_SYSTOLIC = PointsTable(((None, 90, 3), (91, 100, 2), (101, 110, 1), (111, 219, 0),
                              (220, None, 3)))
NEWS2_PULSE = PointsTable(((None, 40, 3), (41, 50, 1), (51, 90, 0), (91, 110, 1), (111, 130, 2),
                           (131, None, 3)))
# One-decimal bands, compared as Decimal so 36.0 / 36.1 never fall between floats.
NEWS2_TEMPERATURE = PointsTable((
    (None, Decimal("35.0"), 3),
    (Decimal("35.1"), Decimal("36.0"), 1),
    (Decimal("36.1"), Decimal("38.0"), 0),
    (Decimal("38.1"), Decimal("39.0"), 1),
    (Decimal("39.1"), None, 2),
))


def _news2_spo2_points(spo2: int, items: Mapping[str, Any]) -> int:
    if items["spo2_scale"] == 2:
        if items["supplemental_oxygen"]:
            return NEWS2_SPO2_SCALE_2_OXYGEN(spo2)
        return NEWS2_SPO2_SCALE_2_AIR(spo2)
    return NEWS2_SPO2_SCALE_1(spo2)


def _table_points(table: PointsTable) -> Callable[[Any, Mapping[str, Any]], int]:
    return lambda value, _items: table(value)


NEWS2 = Scale(
    code="news2",
    name="NEWS2",
    substance=None,
    rater="clinician",
    max_total=20,
    items=(
        Item("respiration_rate", "Respiration rate", kind="number", minimum=0, maximum=80,
             step=1, unit="/min", points=_table_points(NEWS2_RESPIRATION),
             help=f"Breaths per minute. Points: {NEWS2_RESPIRATION.describe()}."),
        Item("spo2", "SpO2", kind="number", minimum=50, maximum=100, step=1, unit="%",
             points=_news2_spo2_points,
             help=f"Scale 1 points: {NEWS2_SPO2_SCALE_1.describe()}. Scale 2 points: "
                  f"{NEWS2_SPO2_SCALE_2_OXYGEN.describe()} (93 and above score 0 on air)."),
        Item("spo2_scale", "SpO2 scale", choices=(
            Choice(1, "Scale 1"),
            Choice(2, "Scale 2 (recorded target 88-92%, e.g. hypercapnic respiratory failure)"),
        ), required=False, default=1, scored=False,
            help="Use scale 2 only for a target range of 88-92% recorded by a clinician."),
        Item("supplemental_oxygen", "Air or oxygen", kind="boolean", choices=(
            Choice(False, "Air", points=0),
            Choice(True, "Oxygen", points=2),
        ), help="Any supplemental oxygen scores 2."),
        Item("systolic_bp", "Systolic blood pressure", kind="number", minimum=40, maximum=300,
             step=1, unit="mmHg", points=_table_points(NEWS2_SYSTOLIC),
             help=f"Points: {NEWS2_SYSTOLIC.describe()}."),
        Item("pulse", "Pulse", kind="number", minimum=20, maximum=250, step=1, unit="/min",
             points=_table_points(NEWS2_PULSE), help=f"Points: {NEWS2_PULSE.describe()}."),
        Item("consciousness", "Consciousness", choices=(
            Choice("A", "Alert", points=0),
            Choice("C", "New confusion", points=3),
            Choice("V", "Responds to voice", points=3),
            Choice("P", "Responds to pain", points=3),
            Choice("U", "Unresponsive", points=3),
        ), help="ACVPU. New confusion, voice, pain or unresponsive each score 3."),
        Item("temperature", "Temperature", kind="number", minimum=25.0, maximum=45.0, step=0.1,
             unit="°C", points=_table_points(NEWS2_TEMPERATURE),
             help=f"One decimal place. Points: {NEWS2_TEMPERATURE.describe()}."),
    ),
    # RCP: aggregate 0-4 low, 5-6 medium, 7+ high; a single parameter scoring 3 -> low-medium.
    bands=(
        Band("low", "Low", 0, 4),
        Band("medium", "Medium", 5, 6),
        Band("high", "High", 7, 20),
    ),
    single_item_rule=SingleItemRule(from_band="low", points=3, code="low-medium",
                                    label="Low-medium (a single parameter scoring 3)"),
    reports_risk=True,
    # RCP: NEWS2 is not validated under 16 or in pregnancy.
    min_age=16,
    valid_in_pregnancy=False,
)
