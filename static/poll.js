// Keeps a running batch's figures current. It fetches the same page and swaps
// only the [data-poll] region, so a half-filled upload form keeps its file and
// the reader keeps their place (a full reload would lose both). Polling stops
// when the fresh region no longer carries data-poll (nothing is running).
(function () {
  "use strict";

  var region = document.querySelector("[data-poll]");
  var bar = document.querySelector("[data-poll-bar]");
  if (!region || !bar || !window.fetch || !window.DOMParser) {
    return;
  }
  var status = bar.querySelector("[role=status]");
  var toggle = bar.querySelector("[data-poll-toggle]");
  var interval = parseInt(region.getAttribute("data-poll"), 10) || 3000;
  var paused = false;
  var timer = null;

  function say(text) {
    status.textContent = text;
  }

  function schedule() {
    timer = window.setTimeout(refresh, interval);
  }

  function refresh() {
    timer = null;
    fetch(window.location.href, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.text();
      })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById(region.id);
        if (!fresh) {
          return;
        }
        var fresh_node = document.importNode(fresh, true);
        region.replaceWith(fresh_node);
        region = fresh_node;
        if (region.hasAttribute("data-poll")) {
          if (!paused) {
            schedule();
          }
        } else {
          say("Nothing is running any more; the figures are final.");
          toggle.hidden = true;
        }
      })
      .catch(function () {
        // A dropped connection or a restart: say so and keep trying.
        say("Could not refresh; trying again.");
        if (!paused) {
          schedule();
        }
      });
  }

  toggle.addEventListener("click", function () {
    paused = !paused;
    toggle.textContent = paused ? "Resume updates" : "Pause updates";
    if (paused) {
      if (timer !== null) {
        window.clearTimeout(timer);
        timer = null;
      }
      say("Updates paused.");
    } else {
      say("Updating every " + interval / 1000 + " seconds while a batch runs.");
      refresh();
    }
  });

  bar.hidden = false;
  say("Updating every " + interval / 1000 + " seconds while a batch runs.");
  schedule();
})();
