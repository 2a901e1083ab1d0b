// Progressive enhancement only: every page works without this file.
// - the metric filter narrows charts as you type;
// - feedback buttons post in the background and update their counts;
// - the dashboard token (when the server requires one) is kept in localStorage;
// - run-now and pause buttons post in the background and say what happened;
// - the theme button goes from the system's theme to dark, light and back
//   (kept in localStorage; theme.js applies it before the page is drawn).
(function () {
  var THEME = "sandstack-theme";
  var themeButton = document.getElementById("theme-toggle");
  if (themeButton) {
    var show = function () {
      var t = document.documentElement.getAttribute("data-theme") || "auto";
      themeButton.textContent = "theme: " + t;
    };
    show();
    themeButton.addEventListener("click", function () {
      var t = document.documentElement.getAttribute("data-theme");
      var next = t === "dark" ? "light" : (t === "light" ? null : "dark");
      if (next) {
        document.documentElement.setAttribute("data-theme", next);
        try { localStorage.setItem(THEME, next); } catch (e) { /* this page only */ }
      } else {
        document.documentElement.removeAttribute("data-theme");
        try { localStorage.removeItem(THEME); } catch (e) { /* this page only */ }
      }
      show();
      document.dispatchEvent(new Event("sandstack-theme"));
    });
  }
  var KEY = "sandstack-dashboard-token";
  var filter = document.getElementById("metric-filter");
  if (filter) {
    filter.addEventListener("input", function () {
      var q = filter.value.toLowerCase();
      document.querySelectorAll("figure.chart").forEach(function (f) {
        var name = (f.getAttribute("data-metric") || "").toLowerCase();
        f.style.display = name.indexOf(q) >= 0 ? "" : "none";
      });
    });
  }
  var tokenForm = document.getElementById("token-form");
  if (tokenForm) {
    tokenForm.token.value = localStorage.getItem(KEY) || "";
    tokenForm.addEventListener("submit", function (e) {
      e.preventDefault();
      localStorage.setItem(KEY, tokenForm.token.value);
    });
  }
  document.querySelectorAll("form.control").forEach(function (form) {
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      var out = document.querySelector(".control-result");
      var button = form.querySelector("button");
      button.disabled = true;
      if (out) { out.textContent = "working…"; }
      var token = localStorage.getItem(KEY) || "";
      var headers = { "Accept": "application/json" };
      if (token) { headers["Authorization"] = "Bearer " + token; }
      fetch(form.action, { method: "POST", headers: headers })
        .then(function (r) { return r.json().then(function (j) { return [r.ok, j]; }); })
        .then(function (res) {
          button.disabled = false;
          var j = res[1];
          if (!res[0]) { if (out) { out.textContent = j.error || "refused"; } return; }
          if (j.run_id !== undefined) {
            if (out) { out.textContent = j.job + ": run " + j.run_id + " " + j.status + ", " + j.rows + " rows"; }
          } else {
            window.location.reload();
          }
        })
        .catch(function () { button.disabled = false; if (out) { out.textContent = "the dashboard did not answer"; } });
    });
  });
  document.querySelectorAll("form.thumbs").forEach(function (form) {
    form.querySelectorAll("button").forEach(function (button) {
      button.addEventListener("click", function (e) {
        e.preventDefault();
        var data = new URLSearchParams(new FormData(form));
        data.set("vote", button.value);
        data.set("token", localStorage.getItem(KEY) || "");
        fetch("/feedback", { method: "POST", body: data, headers: { "Accept": "application/json" } })
          .then(function (r) { return r.json().then(function (j) { return [r.ok, j]; }); })
          .then(function (res) {
            if (!res[0]) { alert(res[1].error || "feedback was not saved"); return; }
            var span = button.querySelector("span");
            span.textContent = String(res[1].count);
            button.classList.add("voted");
          })
          .catch(function () { alert("feedback was not saved: the dashboard did not answer"); });
      });
    });
  });
})();
