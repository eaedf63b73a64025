"""CIWA-Ar: the Clinical Institute Withdrawal Assessment for Alcohol, revised."""
from __future__ import annotations

from monitoring.scales.base import Band, Item, Scale, anchored

# docs/clinical-rules.md s1 CIWA-Ar: "Emergency: 20 or more (consider transfer)". A threshold, not a band.
CIWA_EMERGENCY_TOTAL = 20

# Sullivan JT et al. 1989, Br J Addict 84:1353 (public domain); docs/clinical-rules.md s1.

_HALLUCINATION_GRADES = {4: "Moderately severe hallucinations", 5: "Severe hallucinations",
                         6: "Extremely severe hallucinations", 7: "Continuous hallucinations"}

CIWA_AR = Scale(
    code="ciwa-ar",
    name="CIWA-Ar",
    substance="alcohol",
    rater="clinician",
    max_total=67,
    items=(
        Item("nausea_vomiting", "Nausea and vomiting", choices=anchored(7, {
            0: "No nausea and no vomiting",
            1: "Mild nausea with no vomiting",
            4: "Intermittent nausea with dry heaves",
            7: "Constant nausea, frequent dry heaves and vomiting",
        }), help='Ask "Do you feel sick to your stomach? Have you vomited?" Observation.'),
        Item("tremor", "Tremor", choices=anchored(7, {
            0: "No tremor",
            1: "Not visible, but can be felt fingertip to fingertip",
            4: "Moderate, with arms extended",
            7: "Severe, even with arms not extended (at rest)",
        }), help="Arms extended and fingers spread apart. Observation."),
        Item("paroxysmal_sweats", "Paroxysmal sweats", choices=anchored(7, {
            0: "No sweat visible",
            1: "Barely perceptible sweating, palms moist",
            4: "Beads of sweat obvious on forehead",
            7: "Drenching sweats",
        }), help="Observation."),
        Item("anxiety", "Anxiety", choices=anchored(7, {
            0: "No anxiety, at ease",
            1: "Mildly anxious",
            4: "Moderately anxious, or guarded, so anxiety is inferred",
            7: "Equivalent to acute panic states",
        }), help='Ask "Do you feel nervous?" Observation.'),
        Item("agitation", "Agitation", choices=anchored(7, {
            0: "Normal activity",
            1: "Somewhat more than normal activity",
            4: "Moderately fidgety and restless",
            7: "Paces back and forth, or constantly thrashes about",
        }), help="Observation."),
        Item("tactile_disturbances", "Tactile disturbances", choices=anchored(7, {
            0: "None",
            1: "Very mild itching, pins and needles, burning or numbness",
            2: "Mild itching, pins and needles, burning or numbness",
            3: "Moderate itching, pins and needles, burning or numbness",
            **_HALLUCINATION_GRADES,
        }), help='Ask "Have you any itching, pins and needles, burning or numbness, '
                 'or do you feel bugs crawling on or under your skin?"'),
        Item("auditory_disturbances", "Auditory disturbances", choices=anchored(7, {
            0: "Not present",
            1: "Very mild harshness or ability to frighten",
            2: "Mild harshness or ability to frighten",
            3: "Moderate harshness or ability to frighten",
            **_HALLUCINATION_GRADES,
        }), help='Ask "Are you more aware of sounds around you? Are they harsh? Do they '
                 'frighten you? Are you hearing anything that disturbs you?"'),
        Item("visual_disturbances", "Visual disturbances", choices=anchored(7, {
            0: "Not present",
            1: "Very mild sensitivity",
            2: "Mild sensitivity",
            3: "Moderate sensitivity",
            **_HALLUCINATION_GRADES,
        }), help='Ask "Does the light appear too bright? Is its colour different? Does it hurt '
                 'your eyes? Are you seeing anything that disturbs you?"'),
        Item("headache", "Headache, fullness in head", choices=anchored(7, {
            0: "Not present",
            1: "Very mild",
            2: "Mild",
            3: "Moderate",
            4: "Moderately severe",
            5: "Severe",
            6: "Very severe",
            7: "Extremely severe",
        }), help='Ask "Does your head feel different? Does it feel like there is a band around '
                 'your head?" Do not rate dizziness or light-headedness.'),
        Item("orientation", "Orientation and clouding of sensorium", choices=anchored(4, {
            0: "Oriented and can do serial additions",
            1: "Cannot do serial additions or is uncertain about date",
            2: "Disoriented for date by no more than 2 calendar days",
            3: "Disoriented for date by more than 2 calendar days",
            4: "Disoriented for place and/or person",
        }), help='Ask "What day is this? Where are you? Who am I?"'),
    ),
    # docs/clinical-rules.md s1 defaults; alternatives (severe from 15, minimal to 10, US 10-18/19+)
    # are unit protocol overrides passed to score(bands=...).
    bands=(
        Band("minimal", "Minimal", 0, 7),
        Band("moderate", "Moderate", 8, 15),
        Band("severe", "Severe", 16, 67),
    ),
)
