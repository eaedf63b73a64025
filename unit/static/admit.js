// The admission form's live competence check: asks the API (which saves nothing) as the
// nurse fills the form in, and shows the decision, reasons and recommended setting.
(function () {
  const form = document.getElementById("admit-form");
  const box = document.getElementById("competence");
  if (!form || !box) return;
  const labels = {
    community: "Community or home detox",
    residential_medically_monitored: "Residential, medically monitored",
    medically_managed: "Residential, medically managed",
    hospital: "Hospital (seizures or delirium tremens likely)",
  };
  let timer = null, seq = 0;

  function body() {
    const f = new FormData(form);
    const num = (name) => (f.get(name) === "" || f.get(name) === null ? null : Number(f.get(name)));
    const opioids = f.getAll("current_opioids");
    const assessment = {
      sadq: num("sadq"), audit: num("audit"),
      units_per_day: f.get("units_unknown") === "yes" ? "unknown" : num("units_per_day"),
      history_of_seizures: f.get("history_of_seizures") === "yes",
      history_of_delirium_tremens: f.get("history_of_delirium_tremens") === "yes",
      significant_comorbidity: f.get("significant_comorbidity") === "yes",
      pregnant: f.get("pregnant") === "yes",
      current_opioids: opioids.length ? opioids : null, last_cows_total: num("last_cows_total"),
    };
    const payload = {
      resident: { name: f.get("name") || "(not yet named)", date_of_birth: f.get("date_of_birth"),
                  nhs_number: f.get("nhs_number") || null },
      substances: f.getAll("substances"), assessment,
    };
    // The re-referral check matches the person by name and date of birth, or NHS number.
    const reasons = {};
    for (const [key, value] of f.entries()) {
      if (key.startsWith("change_reason.") && value.trim()) reasons[key.slice(14)] = value.trim();
    }
    if (Object.keys(reasons).length) payload.change_reasons = reasons;
    if ((f.get("override_reason") || "").trim()) payload.override_reason = f.get("override_reason").trim();
    return payload;
  }

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    node.textContent = text;
    if (cls) node.className = cls;
    return node;
  }

  // After a live decline the button says what pressing it will do: the server declines again
  // and keeps the referral for the audit; nobody is admitted.
  function label(declined) {
    const button = document.getElementById("admit-submit");
    button.textContent = declined ? "Record declined referral" : "Admit";
    button.classList.toggle("danger", declined);
    button.classList.toggle("primary", !declined);
  }

  function show(result) {
    label(result.decision === "declined");
    box.replaceChildren(el("h2", "Competence check"));
    box.classList.remove("declined", "admit", "flagged");
    if (result.decision === "declined") {
      box.classList.add("declined");
      box.append(el("p", result.doctor_may_override
        ? "Every unit declines this referral unless a doctor records why:"
        : "This unit must decline: it is medically monitored and the referral meets:", "error"));
      const list = el("ul", "");
      result.reasons.forEach((r) => list.append(el("li", r.criterion + " — " + r.detail)));
      box.append(list);
      if (result.doctor_may_override) {
        box.append(el("p", "A doctor, GP or the clinical lead may admit it with an override reason."));
      }
    } else if (result.high_risk) {
      box.classList.add("flagged");
      box.append(el("p", "Can be admitted here (medically managed) and will be flagged HIGH RISK:"));
      const list = el("ul", "");
      result.risk_reasons.forEach((r) => list.append(el("li", r.criterion + " — " + r.detail)));
      box.append(list);
    } else {
      box.classList.add("admit");
      box.append(el("p", "This unit can admit this referral."));
    }
    if (result.flags.length) {
      result.flags.forEach((r) => box.append(el("p", "For clinical judgement: " + r.detail)));
      box.classList.add("flagged");
    }
    if (result.previous_decline) {
      box.classList.add("flagged");
      box.append(el("p", "Declined on this unit on " + new Date(result.previous_decline.decided_at).toLocaleString() +
        " (referral " + result.previous_decline.referral_id + "). Each changed figure needs a reason to admit:"));
      const changes = el("ul", "");
      result.previous_decline.changes.forEach((c) => changes.append(el("li",
        c.field.replace(/_/g, " ") + ": " + c.before + " → " + c.after + (c.reason ? " (" + c.reason + ")" : " — reason needed"))));
      box.append(changes);
    }
    box.append(el("p", "Recommended setting: " + (labels[result.recommended_setting] || result.recommended_setting)));
    const reasons = el("ul", "", "muted");
    result.recommended_reasons.forEach((r) => reasons.append(el("li", r)));
    box.append(reasons);
  }

  async function check() {
    const mine = ++seq;
    const payload = body();
    // SADQ and AUDIT are asked for unless the referral is for opioids without alcohol.
    const alcohol = payload.substances.includes("alcohol"), opioids = payload.substances.includes("opioids");
    const needsScores = alcohol || !opioids;
    if (!payload.resident.date_of_birth || payload.substances.length === 0 ||
        (needsScores && (payload.assessment.sadq === null || payload.assessment.audit === null))) return;
    try {
      const response = await fetch("/api/v1/referrals/check", {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify(payload),
      });
      const result = await response.json();
      if (mine !== seq) return;  // a newer check is on its way
      if (response.ok) show(result);
      else {
        box.replaceChildren(el("h2", "Competence check"),
          el("p", "Check the form: " + Object.keys(result.errors || {}).join(", ") || result.detail, "muted"));
      }
    } catch (e) {
      box.replaceChildren(el("h2", "Competence check"), el("p", "The check could not reach the server.", "error"));
    }
  }

  form.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(check, 250); });
  form.addEventListener("change", () => { clearTimeout(timer); timer = setTimeout(check, 50); });
  form.addEventListener("submit", () => {
    const button = document.getElementById("admit-submit");
    const declining = button.textContent !== "Admit";
    setTimeout(() => { button.disabled = true; button.textContent = declining ? "Recording…" : "Admitting…"; }, 0);
  });
  check();
})();
