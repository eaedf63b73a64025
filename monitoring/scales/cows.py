"""COWS: the Clinical Opiate Withdrawal Scale."""
from __future__ import annotations

from monitoring.scales.base import Alternative, Band, Item, PointsTable, Scale, listed

# Wesson DR, Ling W 2003, J Psychoactive Drugs 35:253; docs/clinical-rules.md s1.

# COWS resting pulse: <=80 -> 0, 81-100 -> 1, 101-120 -> 2, >120 -> 4.
COWS_PULSE_POINTS = PointsTable(((None, 80, 0), (81, 100, 1), (101, 120, 2), (121, None, 4)))

COWS = Scale(
    code="cows",
    name="COWS",
    substance="opioids",
    rater="clinician",
    max_total=48,
    items=(
        Item("resting_pulse", "Resting pulse rate", choices=listed({
            0: "Pulse rate 80 or below",
            1: "Pulse rate 81-100",
            2: "Pulse rate 101-120",
            4: "Pulse rate greater than 120",
        }), help="Beats per minute, after sitting or lying for one minute. "
                 "Give the score, or resting_pulse_bpm and the score is derived.",
            alternative=Alternative("resting_pulse_bpm", "Resting pulse (beats per minute)",
                                    20, 250, "/min", COWS_PULSE_POINTS)),
        Item("sweating", "Sweating", choices=listed({
            0: "No report of chills or flushing",
            1: "Subjective report of chills or flushing",
            2: "Flushed or observable moistness on face",
            3: "Beads of sweat on brow or face",
            4: "Sweat streaming off face",
        }), help="Over the past half hour, not accounted for by room temperature or activity."),
        Item("restlessness", "Restlessness", choices=listed({
            0: "Able to sit still",
            1: "Reports difficulty sitting still, but is able to do so",
            3: "Frequent shifting or extraneous movements of legs or arms",
            5: "Unable to sit still for more than a few seconds",
        }), help="Observation during assessment."),
        Item("pupil_size", "Pupil size", choices=listed({
            0: "Pupils pinned or normal size for room light",
            1: "Pupils possibly larger than normal for room light",
            2: "Pupils moderately dilated",
            5: "Pupils so dilated that only the rim of the iris is visible",
        })),
        Item("bone_joint_aches", "Bone or joint aches", choices=listed({
            0: "Not present",
            1: "Mild diffuse discomfort",
            2: "Reports severe diffuse aching of joints or muscles",
            4: "Rubbing joints or muscles and unable to sit still because of discomfort",
        }), help="If pain was present before, score only the part attributed to withdrawal."),
        Item("runny_nose_tearing", "Runny nose or tearing", choices=listed({
            0: "Not present",
            1: "Nasal stuffiness or unusually moist eyes",
            2: "Nose running or tearing",
            4: "Nose constantly running or tears streaming down cheeks",
        }), help="Not accounted for by cold symptoms or allergies."),
        Item("gi_upset", "GI upset", choices=listed({
            0: "No GI symptoms",
            1: "Stomach cramps",
            2: "Nausea or loose stool",
            3: "Vomiting or diarrhoea",
            5: "Multiple episodes of diarrhoea or vomiting",
        }), help="Over the last half hour."),
        Item("tremor", "Tremor", choices=listed({
            0: "No tremor",
            1: "Tremor can be felt, but not observed",
            2: "Slight tremor observable",
            4: "Gross tremor or muscle twitching",
        }), help="Observation of outstretched hands."),
        Item("yawning", "Yawning", choices=listed({
            0: "No yawning",
            1: "Yawning once or twice during assessment",
            2: "Yawning three or more times during assessment",
            4: "Yawning several times a minute",
        }), help="Observation during assessment."),
        Item("anxiety_irritability", "Anxiety or irritability", choices=listed({
            0: "None",
            1: "Reports increasing irritability or anxiousness",
            2: "Obviously irritable or anxious",
            4: "So irritable or anxious that taking part in the assessment is difficult",
        })),
        Item("gooseflesh", "Gooseflesh skin", choices=listed({
            0: "Skin is smooth",
            3: "Piloerection can be felt or hairs standing up on arms",
            5: "Prominent piloerection",
        })),
    ),
    bands=(
        Band("none", "No active withdrawal", 0, 4),
        Band("mild", "Mild", 5, 12),
        Band("moderate", "Moderate", 13, 24),
        Band("moderately_severe", "Moderately severe", 25, 36),
        Band("severe", "Severe", 37, 48),
    ),
)
