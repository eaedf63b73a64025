// The give-dose screen: a double tap never records twice (the server also refuses a second
// save with the same form key), and the reason list follows the chosen outcome.
(function () {
  const form = document.getElementById("give-form");
  if (!form) return;
  const button = document.getElementById("give-submit");
  const reason = form.querySelector("select[name=reason]");
  function sync() {
    const outcome = form.querySelector("input[name=outcome]:checked").value;
    reason.required = outcome !== "given";
    reason.querySelectorAll("optgroup").forEach((group) => {
      group.disabled = group.label.toLowerCase() !== outcome;
    });
    if (outcome === "given") reason.value = "";
    // A witness signs for a controlled drug that is given; not for a dose refused or omitted.
    form.querySelectorAll(".witness input").forEach((input) => { input.required = outcome === "given"; });
  }
  form.addEventListener("change", sync);
  form.addEventListener("submit", () => { setTimeout(() => { button.disabled = true; button.textContent = "Recording…"; }, 0); });
  sync();
})();
