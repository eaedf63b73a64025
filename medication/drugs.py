"""The detox drugs this unit prescribes, with their UK rules (docs/clinical-rules.md section 5).

Each limit is a protocol default; a unit may adopt its own through its protocol.
"""
from __future__ import annotations

from dataclasses import dataclass

from medication.errors import OrderInvalid


@dataclass(frozen=True)
class Drug:
    code: str
    name: str
    group: str                     # benzodiazepine | opioid | alpha2_agonist | vitamin
    cd_schedule: int | None        # Misuse of Drugs Regulations 2001 schedule (None: not a CD)
    register: bool                 # kept in the CD register (S2 required; S3 here as good practice)
    forms: tuple[str, ...]
    routes: tuple[str, ...]
    max_daily_mg: float | None     # absolute ceiling in any 24 hours
    max_single_mg: float | None
    diazepam_equivalent: float | None = None  # mg diazepam per mg of this drug
    sedating: bool = True
    strengths: tuple[str, ...] = ()  # what the unit stocks; the first is the default

    @property
    def witness_required(self) -> bool:
        """A witness signs for Schedule 2 and 3 doses (docs/clinical-rules.md s5)."""
        return self.cd_schedule in (2, 3)


DRUGS: dict[str, Drug] = {d.code: d for d in (
    # Diazepam 10 mg = chlordiazepoxide 25 mg = lorazepam 1 mg (docs/clinical-rules.md s5).
    Drug("chlordiazepoxide", "Chlordiazepoxide", "benzodiazepine", 4, True, ("capsule",), ("oral",),
         max_daily_mg=250, max_single_mg=50, diazepam_equivalent=10 / 25,
         strengths=("10 mg", "5 mg")),
    Drug("diazepam", "Diazepam", "benzodiazepine", 4, True, ("tablet", "oral solution"), ("oral",),
         max_daily_mg=None, max_single_mg=20, diazepam_equivalent=1.0,
         strengths=("5 mg", "2 mg", "10 mg", "2 mg/5 mL")),
    Drug("lorazepam", "Lorazepam", "benzodiazepine", 4, True, ("tablet",), ("oral", "sublingual"),
         max_daily_mg=8, max_single_mg=4, diazepam_equivalent=10.0, strengths=("1 mg", "2.5 mg")),
    Drug("methadone", "Methadone", "opioid", 2, True, ("oral solution 1 mg/mL",), ("oral",),
         max_daily_mg=None, max_single_mg=None, strengths=("1 mg/mL",)),
    Drug("buprenorphine", "Buprenorphine", "opioid", 3, True, ("sublingual tablet",), ("sublingual",),
         max_daily_mg=None, max_single_mg=None, strengths=("2 mg", "8 mg", "0.4 mg")),
    Drug("lofexidine", "Lofexidine", "alpha2_agonist", None, False, ("tablet",), ("oral",),
         max_daily_mg=2.4, max_single_mg=0.8, sedating=False, strengths=("0.2 mg",)),
    Drug("thiamine", "Thiamine", "vitamin", None, False, ("tablet",), ("oral",),
         max_daily_mg=300, max_single_mg=100, sedating=False, strengths=("100 mg", "50 mg")),
)}
REGISTER_DRUGS: tuple[Drug, ...] = tuple(d for d in DRUGS.values() if d.register)

def drug_or_invalid(code: str) -> Drug:
    """The drug definition, or a 422 naming the field."""
    if code not in DRUGS:
        raise OrderInvalid(f"Unknown drug {code!r}.", errors={"drug": [f"One of: {', '.join(DRUGS)}."]})
    return DRUGS[code]


# Buprenorphine induction (docs/clinical-rules.md s5): first dose 2-4 mg, day 1 at most 12,
# day 2 at most 16.
BUPRENORPHINE_FIRST_DOSE = (2, 4)
BUPRENORPHINE_DAY_MAX = {1: 12, 2: 16}
BUPRENORPHINE_HOURS_AFTER_SHORT_ACTING = 12
# Methadone: start 10-30 mg daily; increases at most 10 mg a day.
METHADONE_START = (10, 30)
METHADONE_MAX_DAILY_INCREASE = 10
# Over this diazepam-equivalent in 24 hours: senior review (an escalation).
DIAZEPAM_EQUIVALENT_REVIEW_MG = 120
# Chlordiazepoxide PRN: 10-40 mg, at least 2 h apart, at most 250 mg in 24 h, course <= 14 days.
CHLORDIAZEPOXIDE_PRN = {"dose": (10, 40), "min_interval": 120, "max_daily": 250, "course_days": 14}

# Fixed reducing regimen (NICE CG115): times of day by frequency, in the unit's local time.
TIMES = {"qds": ("08:00", "12:00", "17:00", "22:00"), "tds": ("08:00", "14:00", "22:00"),
         "bd": ("08:00", "22:00"), "nocte": ("22:00",)}


def reducing_regimen(start_mg: int) -> list[tuple[int, str, int]]:
    """Chlordiazepoxide fixed reducing days: (day, frequency, mg per dose).

    Four times daily from the starting dose down by 5 mg a day to 10 mg, then 10 mg tds, 5 mg
    tds, 5 mg bd, 5 mg nocte: from 30 mg this is docs/clinical-rules.md's example exactly (9 days);
    from 15 mg it lasts 6 days and from 50 mg 13 (NICE CG115: 6-13 days).
    """
    if start_mg % 5 or not 15 <= start_mg <= 50:
        raise ValueError("the starting dose must be 15-50 mg in steps of 5")
    days = [(mg, "qds") for mg in range(start_mg, 9, -5)]
    days += [(10, "tds"), (5, "tds"), (5, "bd"), (5, "nocte")]
    return [(index + 1, frequency, mg) for index, (mg, frequency) in enumerate(days)]
