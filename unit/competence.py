"""Admission competence (CLINICAL.md section 4): what a medically monitored unit must decline."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

# CLINICAL.md section 4 defaults. A unit may tighten them (lower limits) in its protocol.
COMPETENCE_DEFAULTS: dict = {
    "sadq_decline_above": 30,          # SADQ over 30 declined; exactly the limit is flagged
    "units_decline_above": 30,         # units a day
    "comorbidity_units_from": 15,      # 15-30 units a day with significant comorbidity
    "minimum_age": 18,
}
# Tightening means lowering a limit or raising the minimum age, never the reverse.
TIGHTEN_DIRECTION = {"sadq_decline_above": -1, "units_decline_above": -1,
                     "comorbidity_units_from": -1, "minimum_age": +1}

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

    def decision_for(self, model: str) -> str:
        """A monitored unit declines when any criterion is met; a managed unit admits."""
        if model == "medically_monitored" and self.criteria_met:
            return "declined"
        return "admitted"


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
        elif units is None and "alcohol" in substances:
            flags.append(Criterion("comorbidity_units_unknown", "Comorbidity with units unknown",
                                   "Significant comorbidity recorded but units a day not given: "
                                   "clinical judgement needed"))
    if age < limits["minimum_age"]:
        met.append(Criterion("under_minimum_age", f"Age under {limits['minimum_age']}",
                             f"Aged {age}"))
    if assessment.get("pregnant"):
        met.append(Criterion("pregnant", "Pregnancy", "Pregnant at assessment"))

    result.recommended_setting, result.recommended_reasons = _recommend(
        met, sadq=sadq, units=units, substances=substances, assessment=assessment, age=age)
    return result


def _recommend(met: list[Criterion], *, sadq, units, substances, assessment, age) -> tuple[str, list[str]]:
    codes = {c.code for c in met}
    severe = (sadq is not None and sadq > 30) or (units is not None and units > 30)
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
