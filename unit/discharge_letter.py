"""The discharge letter: one PDF for the GP or the referrer, built from the signed-off summary
(fpdf2's core fonts, as the inspector's report; text they cannot draw is replaced, never lost
silently: the summary in the app is the record)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from config.clock import local
from unit.discharge import AFTERCARE_ITEMS, DischargeSummary, resident_facts, sections_of

RECIPIENTS = {"gp": "GP", "referrer": "referrer"}


def _latin(text: Any) -> str:
    # The core PDF fonts are Latin-1.
    return (str(text).replace("–", "-").replace("—", "-").replace("’", "'").replace("“", '"')
            .replace("”", '"').encode("latin-1", "replace").decode("latin-1"))


def aftercare_lines(summary: DischargeSummary) -> list[str]:
    """The aftercare plan in sentences (letter, page and handover alike)."""
    aftercare = summary.aftercare or {}
    lines = []
    for key, label in AFTERCARE_ITEMS.items():
        value = aftercare.get(key)
        if isinstance(value, list):
            value = ", ".join(value)
        if value:
            lines.append(f"{label}: {value}")
    if aftercare.get("naloxone_supplied") is True:
        lines.append("Naloxone supplied" + (f": {aftercare['naloxone_detail']}" if aftercare.get("naloxone_detail") else "."))
    elif aftercare.get("naloxone_not_supplied_reason"):
        lines.append(f"Naloxone not supplied: {aftercare['naloxone_not_supplied_reason']}")
    if aftercare.get("tolerance_explained") is True:
        lines.append("Loss of tolerance and the risk of overdose explained to the resident.")
    if aftercare.get("medication_on_discharge"):
        lines.append(f"Medication on discharge: {aftercare['medication_on_discharge']}")
    return lines


def letter_pdf(summary: DischargeSummary, unit_name: str, to: str, now: datetime) -> bytes:
    """The letter to the GP (``to="gp"``) or the referrer, with a copy line for the other."""
    from fpdf import FPDF

    admission = summary.admission
    person = resident_facts(admission)
    recipient = (summary.gp if to == "gp" else summary.referrer) or {}
    other = summary.referrer if to == "gp" else summary.gp

    class Letter(FPDF):
        def footer(self) -> None:
            self.set_y(-12)
            self.set_font("Helvetica", "", 8)
            self.set_text_color(90, 90, 90)
            self.cell(0, 6, _latin(f"Discharge summary: {person['name']}, NHS {person['nhs_number']} - "
                                   f"{unit_name} - page {self.page_no()} of {{nb}}"), align="C")
            self.set_text_color(0, 0, 0)

    pdf = Letter(orientation="P", unit="mm", format="A4")
    pdf.set_auto_page_break(auto=True, margin=18)
    pdf.add_page()

    def line(text: str, size: float = 10, style: str = "", height: float = 5.5) -> None:
        pdf.set_font("Helvetica", style, size)
        pdf.multi_cell(0, height, _latin(text), new_x="LMARGIN", new_y="NEXT")

    line(unit_name, 14, "B", 7)
    line(f"{local(summary.finalised_at or now):%d %B %Y}", 10)
    pdf.ln(3)
    for part in filter(None, [recipient.get("name"), recipient.get("organisation"), recipient.get("address")]):
        line(part)
    pdf.ln(3)
    line(f"Discharge summary: {person['name']}", 12, "B", 7)
    line(f"Date of birth {person['date_of_birth']} - NHS number {person['nhs_number']}")
    pdf.ln(2)
    greeting = recipient.get("name") or ("Doctor" if to == "gp" else "colleague")
    line(f"Dear {greeting},")
    line(f"{person['name']} stayed with us for a residential detox. This letter sums up the stay, "
         "the detox given and the aftercare agreed.")
    if summary.status != "final":
        line("DRAFT: this summary has not been signed off.", 11, "B")
    for section in sections_of(summary):
        pdf.ln(2)
        if pdf.get_y() > pdf.h - 45:
            pdf.add_page()
        line(section["title"], 11, "B", 6)
        for text in section["lines"]:
            line(text)
        table = section.get("table")
        if table and table["rows"]:
            pdf.set_font("Helvetica", "", 8.5)
            with pdf.table(text_align="LEFT", line_height=4.5) as grid:
                grid.row([_latin(h) for h in table["header"]])
                for row in table["rows"][:300]:
                    grid.row([_latin(cell) for cell in row])
    pdf.ln(2)
    line("Aftercare plan", 11, "B", 6)
    for text in aftercare_lines(summary) or ["None recorded."]:
        line(text)
    if summary.contacts:
        pdf.ln(2)
        line("Contacts", 11, "B", 6)
        for contact in summary.contacts:
            line(" - ".join(filter(None, [contact.get("role"), contact.get("name"), contact.get("contact")])))
    if summary.note:
        pdf.ln(2)
        line(summary.note)
    pdf.ln(4)
    signer = summary.finalised_by
    line("Yours sincerely,")
    if signer is not None:
        line(f"{signer.full_name} ({signer.role}), {unit_name}")
    if other and other.get("name"):
        pdf.ln(2)
        line(f"Copy to: {other['name']}" + (f", {other['organisation']}" if other.get("organisation") else ""), 9)
    return bytes(pdf.output())
