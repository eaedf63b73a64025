"""SOWS: the Subjective Opiate Withdrawal Scale (self-rated)."""
from __future__ import annotations

from monitoring.scales.base import Band, Item, Scale, listed

# Handelsman L et al. 1987, Am J Drug Alcohol Abuse 13:293 (16 items; not Gossop's SOWS).

_SOWS_CHOICES = listed({0: "Not at all", 1: "A little", 2: "Moderately",
                         3: "Quite a bit", 4: "Extremely"})

SOWS = Scale(
    code="sows",
    name="SOWS",
    substance="opioids",
    rater="self",
    max_total=64,
    items=tuple(Item(key, label, choices=_SOWS_CHOICES, help="How do you feel right now?")
                for key, label in (
        ("anxious", "I feel anxious"),
        ("yawning", "I feel like yawning"),
        ("perspiring", "I am perspiring"),
        ("tearing", "My eyes are tearing"),
        ("runny_nose", "My nose is running"),
        ("goose_flesh", "I have goosebumps"),
        ("shaking", "I am shaking"),
        ("hot_flushes", "I have hot flushes"),
        ("cold_flushes", "I have cold flushes"),
        ("aches", "My bones and muscles ache"),
        ("restless", "I feel restless"),
        ("nauseous", "I feel nauseous"),
        ("vomiting", "I feel like vomiting"),
        ("twitching", "My muscles twitch"),
        ("stomach_cramps", "I have stomach cramps"),
        ("craving", "I feel like using now"),
    )),
    # No published bands: docs/clinical-rules.md s1 local defaults, always shown with the raw total.
    bands=(
        Band("none", "None", 0, 0),
        Band("mild", "Mild", 1, 10),
        Band("moderate", "Moderate", 11, 20),
        Band("severe", "Severe", 21, 64),
    ),
)
