// The tablet observation form: running total and band as items are tapped, submit enabled
// only when every item is answered, and disabled at the first tap so it never sends twice
// (the server also refuses a second save through the form's idempotency key).
(function () {
  const form = document.getElementById("observe-form");
  if (!form) return;
  const scale = JSON.parse(form.dataset.scale);
  const totalEl = document.getElementById("running-total");
  const bandEl = document.getElementById("running-band");
  const missingEl = document.getElementById("running-missing");
  const submit = document.getElementById("observe-submit");
  const allChoices = scale.items.every((item) => item.kind === "choice");
  let seq = 0, timer = null;

  function value(key) {
    const checked = form.querySelector(`input[name="${key}"]:checked`);
    if (checked) return checked.value;
    const text = form.querySelector(`input[name="${key}"][type=text]`);
    return text && text.value.trim() !== "" ? text.value.trim() : null;
  }

  function missing() {
    return scale.items.filter((item) => {
      if (!item.required) return false;
      if (value(item.key) !== null) return false;
      return !(item.alternative && value(item.alternative.key) !== null);
    });
  }

  function bandFor(total) {
    const band = scale.bands.find((b) => total >= b.low && total <= b.high);
    return band ? band.code : "";
  }

  function showBand(code, label) {
    bandEl.className = "badge band-" + code;
    bandEl.textContent = (label || code).replace(/_/g, " ");
  }

  async function serverScore() {
    const mine = ++seq;
    const items = {};
    scale.items.forEach((item) => {
      const v = value(item.key);
      if (v !== null) items[item.key] = item.kind === "number" || item.kind === "choice" && !isNaN(Number(v)) ? Number(v) : v === "true" ? true : v === "false" ? false : v;
      if (item.alternative && value(item.alternative.key) !== null && v === null) items[item.alternative.key] = Number(value(item.alternative.key));
    });
    try {
      const response = await fetch(form.dataset.scoreUrl, {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ items }),
      });
      const body = await response.json();
      if (mine !== seq) return;
      if (response.ok) {
        totalEl.textContent = body.total;
        showBand(body.band, body.risk ? body.risk + " risk" : body.band);
        missingEl.textContent = (body.warnings || []).join(" ");
        submit.disabled = false;
      } else {
        const bad = Object.keys((body.errors && body.errors.items) || {});
        missingEl.textContent = "Check: " + bad.join(", ");
        submit.disabled = true;
      }
    } catch (e) {
      missingEl.textContent = "Could not reach the server to score; you can still save.";
      submit.disabled = false;
    }
  }

  function update() {
    const left = missing();
    if (allChoices) {
      let total = 0;
      scale.items.forEach((item) => { const v = value(item.key); if (v !== null && !isNaN(Number(v))) total += Number(v); });
      if (scale.code === "cows" && value("resting_pulse") === null && value("resting_pulse_bpm") !== null) {
        const bpm = Number(value("resting_pulse_bpm"));
        total += bpm <= 80 ? 0 : bpm <= 100 ? 1 : bpm <= 120 ? 2 : 4;
      }
      totalEl.textContent = total;
      if (left.length === 0) showBand(bandFor(total));
      else { bandEl.className = "badge"; bandEl.textContent = "so far"; }
    }
    if (left.length) {
      missingEl.textContent = left.length + " to answer: " + left.map((i) => i.label).join(", ");
      submit.disabled = true;
      if (!allChoices) { totalEl.textContent = "–"; bandEl.className = "badge"; bandEl.textContent = "incomplete"; }
      return;
    }
    missingEl.textContent = "";
    if (allChoices) { submit.disabled = false; }
    else { clearTimeout(timer); timer = setTimeout(serverScore, 150); }
  }

  form.addEventListener("change", update);
  form.addEventListener("input", update);
  form.addEventListener("submit", (event) => {
    if (submit.disabled) { event.preventDefault(); return; }
    setTimeout(() => { submit.disabled = true; submit.textContent = "Saving…"; }, 0);
  });
  update();
})();
