// The ward board refreshes itself: it fetches the page in the background and swaps the live
// part in. The X-Background-Refresh header tells the server this is not the nurse's activity,
// so an unattended board still signs out after 30 minutes idle.
(function () {
  const live = document.getElementById("board-live");
  if (!live) return;
  const seconds = Number(live.dataset.refreshSeconds || 30);
  async function refresh() {
    try {
      const response = await fetch(window.location.href, {
        credentials: "same-origin", headers: { "X-Background-Refresh": "1" }, redirect: "manual",
      });
      if (response.type === "opaqueredirect" || response.status === 401) {
        window.location.reload();  // the session ended: show the sign-in page
        return;
      }
      if (!response.ok) return;
      const doc = new DOMParser().parseFromString(await response.text(), "text/html");
      const fresh = doc.getElementById("board-live");
      const banner = doc.querySelector("[data-testid=scheduler-stale]");
      const current = document.querySelector("[data-testid=scheduler-stale]");
      if (fresh) live.replaceChildren(...fresh.childNodes);
      if (banner && !current) document.querySelector("main").before(banner);
      if (!banner && current) current.remove();
      live.dataset.refreshedAt = new Date().toISOString();
    } catch (e) { /* offline for a moment: try again next time */ }
  }
  setInterval(refresh, seconds * 1000);
  document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });
})();
