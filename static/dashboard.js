// Draws the dashboard's charts (Chart.js, vendored in static/vendor/chartjs/) from the
// figures the page carries as json_script data: {currency, months, runs, series:
// [{key, label, amounts, total}], totals}, amounts as decimal text to the cent, null
// for a month with no allocation run. Every chart has its figures as a table beside
// it, so nothing here is the only way to read them; without JavaScript the tables stay.
(function () {
  "use strict";

  if (!window.Chart) {
    return;
  }

  // Each colour has at least 3:1 contrast on white (WCAG 1.4.11); white borders keep
  // stacked segments apart, and the legend and the table name every series.
  var PALETTE = ["#0a58b8", "#c25400", "#1b7a3e", "#8e3b9e", "#00727a", "#7a6a00", "#2e3a87", "#b0306a"];
  var FIXED = {
    "": "#5c6670", // no modality: shared pools and fees
    _others: "#8a8f96",
    _unallocated: "#a4161a"
  };
  var INK = "#1b1f24";
  var MUTED = "#545b64";
  var GRID = "#e1e5ea";
  var reduceMotion = window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches;

  function moneyFormat(currency, compact) {
    try {
      return new Intl.NumberFormat("en-US", {
        style: "currency",
        currency: currency,
        notation: compact ? "compact" : "standard",
        maximumFractionDigits: compact ? 1 : 2,
        minimumFractionDigits: compact ? 0 : 2
      });
    } catch (error) {
      return new Intl.NumberFormat("en-US", { maximumFractionDigits: 2, minimumFractionDigits: 2 });
    }
  }

  function draw(canvas) {
    var source = document.getElementById(canvas.getAttribute("data-chart"));
    if (!source) {
      return;
    }
    var data = JSON.parse(source.textContent);
    var exact = moneyFormat(data.currency, false);
    var compact = moneyFormat(data.currency, true);
    var next = 0;
    var datasets = data.series.map(function (series) {
      var colour = Object.prototype.hasOwnProperty.call(FIXED, series.key)
        ? FIXED[series.key]
        : PALETTE[next++ % PALETTE.length];
      return {
        label: series.label,
        // Amounts stay decimal text until here; a chart's pixels need no more than a float.
        data: series.amounts.map(function (amount) { return amount === null ? null : Number(amount); }),
        backgroundColor: colour,
        borderColor: "#ffffff",
        borderWidth: 1,
        maxBarThickness: 56
      };
    });
    new window.Chart(canvas, {
      type: "bar",
      data: { labels: data.months, datasets: datasets },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: reduceMotion ? false : { duration: 300 },
        interaction: { mode: "index", intersect: false },
        scales: {
          x: { stacked: true, grid: { display: false }, ticks: { color: INK } },
          y: {
            stacked: true,
            beginAtZero: true,
            grid: { color: GRID },
            border: { display: false },
            ticks: {
              color: MUTED,
              callback: function (value) { return compact.format(value); }
            }
          }
        },
        plugins: {
          legend: {
            position: "bottom",
            labels: { color: INK, boxWidth: 12, boxHeight: 12, padding: 12 }
          },
          tooltip: {
            callbacks: {
              label: function (item) {
                var amount = data.series[item.datasetIndex].amounts[item.dataIndex];
                return " " + item.dataset.label + ": " + (amount === null ? "no run" : exact.format(Number(amount)));
              },
              footer: function (items) {
                if (!items.length) {
                  return "";
                }
                var total = data.totals[items[0].dataIndex];
                return total === null ? "No allocation run" : "Total: " + exact.format(Number(total));
              }
            }
          }
        }
      }
    });
  }

  var canvases = document.querySelectorAll("canvas[data-chart]");
  for (var i = 0; i < canvases.length; i++) {
    draw(canvases[i]);
  }
})();
