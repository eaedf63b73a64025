"""GMAWS: the Glasgow Modified Alcohol Withdrawal Scale."""
from __future__ import annotations

from monitoring.scales.base import Band, Item, Scale, listed

# docs/clinical-rules.md s1 GMAWS (NHS GGC): 8 or more persisting beyond an hour -> urgent medical review.
GMAWS_URGENT_REVIEW_TOTAL = 8

# Glasgow Modified Alcohol Withdrawal Scale, NHS GGC alcohol guideline; docs/clinical-rules.md s1.

GMAWS = Scale(
    code="gmaws",
    name="GMAWS",
    substance="alcohol",
    rater="clinician",
    max_total=10,
    items=(
        Item("tremor", "Tremor",
             choices=listed({0: "No tremor", 1: "On movement", 2: "At rest"})),
        Item("sweating", "Sweating",
             choices=listed({0: "No sweating", 1: "Moist", 2: "Drenching"})),
        Item("hallucinations", "Hallucinations",
             choices=listed({0: "None", 1: "Mild or distractable",
                              2: "Continuous or distressed"})),
        Item("orientation", "Orientation",
             choices=listed({0: "Oriented", 1: "Uncertain", 2: "Disoriented"})),
        Item("agitation", "Agitation",
             choices=listed({0: "Calm", 1: "Anxious", 2: "Distressed or pacing"})),
    ),
    bands=(
        Band("mild", "Mild", 0, 3),
        Band("moderate", "Moderate", 4, 7),
        Band("severe", "Severe", 8, 10),
    ),
)
