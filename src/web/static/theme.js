// Runs before the page is drawn, so a chosen theme shows without a flash:
// "dark" or "light" from localStorage, else the system's (CSS media query).
(function () {
  try {
    var t = localStorage.getItem("sandstack-theme");
    if (t === "dark" || t === "light") { document.documentElement.setAttribute("data-theme", t); }
  } catch (e) { /* storage off: follow the system */ }
})();
