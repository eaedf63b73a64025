"""Code lists of the resident record's return fields and of consent to share.

Each list is ``code -> label``: the code is what the API takes and stores, the label what a
person reads. Where a national list exists the code is its code (NHS ethnic category); the
others are this project's codes, each mapped by name to the NDTMS category in
``docs/returns/ndtms.md`` (the NDTMS numeric codes are not published with the public
definitions this project could consult, so none is invented here).
"""
from __future__ import annotations

# NHS Data Dictionary PERSON STATED SEX (phenotypic sex as stated).
SEXES = {
    "male": "Male",
    "female": "Female",
    "indeterminate": "Indeterminate (unable to be classified as male or female)",
    "not_known": "Not known",
}

# NHS Data Dictionary GENDER IDENTITY CODE.
GENDER_IDENTITIES = {
    "male": "Male (including trans man)",
    "female": "Female (including trans woman)",
    "non_binary": "Non-binary",
    "other": "Other (not listed)",
    "not_known": "Not known",
    "not_stated": "Not stated (declined to say)",
}

# NHS Data Dictionary ETHNIC CATEGORY (2001 census categories), the codes of UK Core's
# CodeSystem UKCore-EthnicCategoryEngland.
ETHNIC_CATEGORIES = {
    "A": "White - British",
    "B": "White - Irish",
    "C": "White - Any other White background",
    "D": "Mixed - White and Black Caribbean",
    "E": "Mixed - White and Black African",
    "F": "Mixed - White and Asian",
    "G": "Mixed - Any other mixed background",
    "H": "Asian or Asian British - Indian",
    "J": "Asian or Asian British - Pakistani",
    "K": "Asian or Asian British - Bangladeshi",
    "L": "Asian or Asian British - Any other Asian background",
    "M": "Black or Black British - Caribbean",
    "N": "Black or Black British - African",
    "P": "Black or Black British - Any other Black background",
    "R": "Other ethnic groups - Chinese",
    "S": "Other ethnic groups - Any other ethnic group",
    "Z": "Not stated",
    "99": "Not known",
}

ACCOMMODATION_NEEDS = {
    "urgent_housing_problem": "Urgent housing problem (no fixed abode)",
    "housing_problem": "Housing problem",
    "no_housing_problem": "No housing problem",
    "declined": "Declined to answer",
}

PARENTAL_STATUSES = {
    "all_children_live_with_client": "All of their children live with them",
    "some_children_live_with_client": "Some of their children live with them",
    "no_children_live_with_client": "None of their children live with them",
    "not_a_parent": "Not a parent",
    "declined": "Declined to answer",
}

INJECTING_STATUSES = {
    "never": "Never injected",
    "previously": "Previously injected",
    "currently": "Currently injecting",
    "declined": "Declined to answer",
}

# Problem substances, up to three in order of the problem they cause (NDTMS drug 1, 2, 3).
PROBLEM_SUBSTANCES = {
    "alcohol": "Alcohol",
    "heroin": "Heroin",
    "methadone_illicit": "Methadone (not prescribed)",
    "buprenorphine_illicit": "Buprenorphine (not prescribed)",
    "other_opiates": "Other opiates",
    "prescription_opioids": "Prescription-only opioid analgesics",
    "crack_cocaine": "Crack cocaine",
    "cocaine": "Cocaine (powder)",
    "amphetamines": "Amphetamines",
    "cannabis": "Cannabis",
    "benzodiazepines": "Benzodiazepines",
    "gabapentinoids": "Pregabalin or gabapentin",
    "ketamine": "Ketamine",
    "new_psychoactive": "New psychoactive substances",
    "other": "Other substance",
}

REFERRAL_SOURCES = {
    "self": "Self-referral",
    "family_or_friend": "Family or friend",
    "gp": "GP",
    "hospital": "Hospital (including A&E)",
    "community_treatment_service": "Community drug and alcohol service",
    "mental_health_service": "Mental health service",
    "criminal_justice": "Criminal justice (probation, prison, liaison)",
    "social_services": "Social services",
    "other": "Other",
}

# Who a resident may agree to share their record with (consent and information sharing).
CONSENT_RECIPIENTS = {
    "gp": "The resident's GP",
    "community_team": "The community team that referred them (or takes them on)",
    "family": "A family member named by the resident",
    "ndtms": "NDTMS, the national drug treatment monitoring system (identifiable return)",
}
CONSENT_DECISIONS = {"given": "Consent given", "refused": "Consent refused"}
