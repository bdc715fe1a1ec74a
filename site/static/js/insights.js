/* Shelfmark insights: the state-of-the-art-over-time chart of a dataset page (a step line of the best
   score so far per kind, by the paper's year), drawn with the local plotly.js from <script type="application/json">. */
(function () {
  "use strict";

  // Plotly reads hover text as a little HTML; names from the registry must show as written.
  function escapeLabel(text) {
    return String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }

  // Two kinds often hold the same record (2014's off-the-shelf and fine-tuned VOC numbers differ by 0.02):
  // a dash of their own keeps the line underneath in sight.
  var DASH = { non_cnn: "dot", off_the_shelf: "solid", specialized: "dash" };

  function sotaFigure(chart, width) {
    var narrow = width < 600;
    var traces = [];
    chart.series.forEach(function (series) {
      // the step line, drawn on to the board's last year
      traces.push({
        type: "scatter", mode: "lines", name: series.label, x: series.x, y: series.y,
        line: { shape: "hv", color: series.colour, width: 2, dash: DASH[series.kind] || "solid" }, hoverinfo: "skip", legendgroup: series.kind
      });
      // the records themselves, with their method in the hover label
      traces.push({
        type: "scatter", mode: "markers", name: series.label, showlegend: false, legendgroup: series.kind,
        x: series.records.map(function (r) { return r.year; }),
        y: series.records.map(function (r) { return r.score; }),
        marker: { color: series.colour, size: 8, symbol: series.records.map(function (r) { return r.measured ? "diamond" : "circle"; }) },
        customdata: series.records.map(function (r) {
          return escapeLabel(r.method + (r.unverified ? " † unverified" : "") + (r.measured ? " (measured by Shelfmark)" : ""));
        }),
        hovertemplate: "%{customdata}<br>%{x}: %{y}" + escapeLabel(chart.unit) + "<extra>" + escapeLabel(series.label) + "</extra>"
      });
    });
    var layout = {
      autosize: true, height: narrow ? 300 : 360, font: { size: narrow ? 11 : 12 }, showlegend: true,
      margin: { l: 8, r: narrow ? 12 : 20, t: 30, b: 40 },
      legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom" }, hoverlabel: { align: "left" },
      xaxis: { title: { text: "year of the paper" }, dtick: 1, tickformat: "d", automargin: true, fixedrange: true },
      yaxis: { title: { text: escapeLabel(chart.title + " (" + chart.unit + ")") }, automargin: true, fixedrange: true }
    };
    return { traces: traces, layout: layout };
  }

  function drawSota() {
    var node = document.getElementById("sota-chart");
    var source = document.getElementById("sota-chart-data");
    if (!node || !source || typeof Plotly === "undefined") return;
    var chart = JSON.parse(source.textContent);
    if (!chart.series.length) return;
    var figure = sotaFigure(chart, node.clientWidth || 800);
    Plotly.react(node, figure.traces, figure.layout, { responsive: true, displaylogo: false, displayModeBar: false });
  }

  // Deferred scripts all run before DOMContentLoaded: plotly.min.js (later in the page) is there by then.
  document.addEventListener("DOMContentLoaded", drawSota);
})();
