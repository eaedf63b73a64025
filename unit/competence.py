"""Admission competence (docs/clinical-rules.md s4): what a medically monitored unit must
decline, and what every unit declines unless a doctor records why."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

# docs/clinical-rules.md s4 defaults. A unit may tighten them (lower limits) in its protocol.
COMPETENCE_DEFAULTS: dict = {
    "sadq_decline_above": 30,          # SADQ over 30 declined; exactly the limit is flagged
    "units_decline_above": 30,         # units a day
    "comorbidity_units_from": 15,      # 15-30 units a day with significant comorbidity
    "minimum_age": 18,
}
# Tightening means lowering a limit or raising the minimum age, never the reverse.
TIGHTEN_DIRECTION = {"sadq_decline_above": -1, "units_decline_above": -1,
                     "comorbidity_units_from": -1, "minimum_age": +1}

# Units a day may be given as "unknown": an explicit answer, which counts as over the limit
# (docs/clinical-rules.md s4), never an omission.
UNITS_UNKNOWN = "unknown"
# The age under which every unit declines unless a doctor records why (NICE CG100).
ABSOLUTE_MINIMUM_AGE = 16

# Figures of a referral compared with a declined one's: a re-referral within 30 days of a
# decline is admitted only with a reason for each that changed (docs/clinical-rules.md s4).
REFERRAL_FIGURES = ("date_of_birth", "substances", "sadq", "audit", "units_per_day",
                    "history_of_seizures", "history_of_delirium_tremens",
                    "significant_comorbidity", "pregnant", "current_opioids", "last_cows_total")

SETTING_LABELS = {
    "community": "Community or home detox",
    "residential_medically_monitored": "Residential, medically monitored",
    "medically_managed": "Residential, medically managed (doctor on site 24 hours)",
    "hospital": "Hospital (seizures or delirium tremens likely)",
}


@dataclass
class Criterion:
    code: str
    criterion: str
    detail: str

    def to_dict(self) -> dict:
        return {"code": self.code, "criterion": self.criterion, "detail": self.detail}


@dataclass
class CompetenceResult:
    """What the criteria say of one referral, before the unit's model is applied."""

    criteria_met: list[Criterion] = field(default_factory=list)
    flags: list[Criterion] = field(default_factory=list)
    recommended_setting: str = "community"
    recommended_reasons: list[str] = field(default_factory=list)
    # Declined on every unit, whatever its model, unless a doctor records why.
    declined_everywhere: list[Criterion] = field(default_factory=list)

    def decision_for(self, model: str, *, doctor_override: bool = False) -> str:
        """A monitored unit declines when any criterion is met; a managed unit admits, except
        what every unit declines (hospital recommended, under 16) unless a doctor overrides."""
        if model == "medically_monitored" and self.criteria_met:
            return "declined"
        if self.declined_everywhere and not doctor_override:
            return "declined"
        return "admitted"

    def reasons_for(self, model: str) -> list[Criterion]:
        """What declines the referral on a unit of this model (before any override)."""
        met = self.criteria_met if model == "medically_monitored" else []
        return met + self.declined_everywhere


def age_on(date_of_birth: date, day: date) -> int:
    """Age in whole years on ``day``."""
    years = day.year - date_of_birth.year
    if (day.month, day.day) < (date_of_birth.month, date_of_birth.day):
        years -= 1
    return years


def assess_competence(*, date_of_birth: date, substances: list[str], assessment: dict,
                      today: date, limits: dict | None = None) -> CompetenceResult:
    """Apply the competence criteria and recommend a setting, with reasons in words."""
    limits = {**COMPETENCE_DEFAULTS, **(limits or {})}
    result = CompetenceResult()
    met, flags = result.criteria_met, result.flags
    sadq = assessment.get("sadq")
    units = assessment.get("units_per_day")
    units_unknown = units == UNITS_UNKNOWN
    if units_unknown:
        units = None  # every comparison below is with a known number
    age = age_on(date_of_birth, today)
    sadq_limit, units_limit = limits["sadq_decline_above"], limits["units_decline_above"]

    if sadq is not None and sadq > sadq_limit:
        met.append(Criterion("sadq_over_limit", f"SADQ over {sadq_limit}",
                             f"SADQ {sadq}: severe alcohol dependence"))
    elif sadq is not None and sadq == sadq_limit:
        flags.append(Criterion("sadq_at_limit", f"SADQ exactly {sadq_limit}",
                               f"SADQ {sadq}: clinical judgement needed (UK sources differ at 30)"))
    if units is not None and units > units_limit:
        met.append(Criterion("units_over_limit", f"Over {units_limit} units a day",
                             f"{units:g} units a day"))
    elif units_unknown:
        # docs/clinical-rules.md s4: units unknown counts as over the limit.
        met.append(Criterion("units_over_limit", f"Over {units_limit} units a day",
                             f"Units a day not known: counted as over {units_limit}"))
    if assessment.get("history_of_seizures"):
        met.append(Criterion("seizure_history", "History of epilepsy or withdrawal seizures",
                             "Seizure history recorded at assessment"))
    if assessment.get("history_of_delirium_tremens"):
        met.append(Criterion("delirium_tremens_history", "History of delirium tremens",
                             "Delirium tremens history recorded at assessment"))
    if "alcohol" in substances and "benzodiazepines" in substances:
        met.append(Criterion("alcohol_and_benzodiazepines",
                             "Concurrent alcohol and benzodiazepine withdrawal",
                             "Both alcohol and benzodiazepines listed"))
    if assessment.get("significant_comorbidity"):
        low = limits["comorbidity_units_from"]
        if units is not None and low <= units <= units_limit:
            met.append(Criterion("comorbidity_with_units",
                                 f"{low}-{units_limit} units a day with significant comorbidity",
                                 f"{units:g} units a day and significant physical or mental comorbidity"))
    if age < limits["minimum_age"]:
        met.append(Criterion("under_minimum_age", f"Age under {limits['minimum_age']}",
                             f"Aged {age}"))
    if assessment.get("pregnant"):
        met.append(Criterion("pregnant", "Pregnancy", "Pregnant at assessment"))

    result.recommended_setting, result.recommended_reasons = _recommend(
        met, sadq=sadq, units=units, units_unknown=units_unknown, substances=substances,
        assessment=assessment, age=age)
    # docs/clinical-rules.md s4 (NICE CG100): declined on every unit unless a doctor records why.
    if result.recommended_setting == "hospital":
        result.declined_everywhere.append(Criterion(
            "hospital_recommended", "Recommended setting: hospital",
            "Seizure or delirium tremens history with severe dependence: inpatient care; "
            "a doctor must record why this unit admits"))
    if age < ABSOLUTE_MINIMUM_AGE:
        result.declined_everywhere.append(Criterion(
            "under_16", f"Age under {ABSOLUTE_MINIMUM_AGE}",
            f"Aged {age}: a doctor must record why this unit admits"))
    return result


def _recommend(met: list[Criterion], *, sadq, units, units_unknown, substances, assessment,
               age) -> tuple[str, list[str]]:
    codes = {c.code for c in met}
    # Units unknown count as over 30 here too: the safer reading.
    severe = (sadq is not None and sadq > 30) or (units is not None and units > 30) or units_unknown
    if codes & {"seizure_history", "delirium_tremens_history"} and (
        severe or "alcohol_and_benzodiazepines" in codes
    ):
        return "hospital", ["Seizure or delirium tremens history with severe dependence: "
                            "seizures or delirium tremens are likely (NICE CG115: inpatient)"]
    if met:
        reasons = [f"{c.criterion} ({c.detail})" for c in met]
        if "under_minimum_age" in codes:
            reasons.append("Under 18: involve a specialist young people's service")
        return "medically_managed", reasons
    reasons = []
    if sadq is not None and sadq >= 16:
        reasons.append(f"SADQ {sadq}: moderate dependence")
    if units is not None and units >= 15:
        reasons.append(f"{units:g} units a day")
    if "opioids" in substances or "benzodiazepines" in substances:
        reasons.append("Opioid or benzodiazepine withdrawal needs daily medical oversight")
    if assessment.get("significant_comorbidity"):
        reasons.append("Significant comorbidity")
    if reasons:
        return "residential_medically_monitored", reasons
    return "community", ["Mild dependence (SADQ under 16, under 15 units a day) and no "
                         "complicating factors: community or home detox"]
