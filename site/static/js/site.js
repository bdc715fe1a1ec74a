/* Shelfmark page behaviour: plotly charts from <script type="application/json"> data, copy buttons. */
(function () {
  "use strict";

  function data(id) {
    var node = document.getElementById(id);
    return node ? JSON.parse(node.textContent) : null;
  }

  // The page heading names the chart; the legend sits above the plot so axis titles stay clear.
  var layoutBase = { margin: { l: 10, r: 20, t: 30, b: 40 }, font: { size: 12 }, showlegend: true,
                     legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom" } };

  // Dataset page: one horizontal bar per result, best at the top, coloured by kind.
  function boardChart(node, chart) {
    var kinds = [];
    chart.bars.forEach(function (bar) { if (kinds.indexOf(bar.kind) < 0) kinds.push(bar.kind); });
    var labels = chart.bars.map(function (bar, i) { return (i + 1) + ". " + bar.method + (bar.unverified ? " †" : ""); });
    var traces = kinds.map(function (kind) {
      var bars = chart.bars.map(function (bar, i) { return { bar: bar, label: labels[i] }; })
                           .filter(function (item) { return item.bar.kind === kind; });
      return {
        type: "bar", orientation: "h", name: bars[0].bar.kind_label,
        x: bars.map(function (item) { return item.bar.score; }),
        y: bars.map(function (item) { return item.label; }),
        marker: { color: bars[0].bar.colour },
        hovertemplate: "%{y}<br>%{x}" + chart.unit + "<extra></extra>"
      };
    });
    var layout = Object.assign({}, layoutBase, {
      height: Math.max(260, 60 + 28 * chart.bars.length),
      yaxis: { categoryorder: "array", categoryarray: labels.slice().reverse(), automargin: true },
      xaxis: { title: { text: chart.title + " (" + chart.unit + ")" }, rangemode: "tozero", automargin: true }
    });
    Plotly.newPlot(node, traces, layout, { responsive: true, displaylogo: false });
  }

  // Overview page: per task family, grouped bars of the best score of each kind per dataset.
  function overviewChart(node, family, legend) {
    var x = family.datasets.map(function (d) {
      return d.name.split(" (")[0] + "<br>(" + d.metric + (d.higher_is_better ? "" : ", lower is better") + ")";
    });
    var traces = legend.map(function (entry) {
      return {
        type: "bar", name: entry.column, marker: { color: entry.colour }, x: x,
        y: family.datasets.map(function (d) { return d.best[entry.kind] ? d.best[entry.kind].score : null; }),
        customdata: family.datasets.map(function (d) { return d.best[entry.kind] ? d.best[entry.kind].method : "no result"; }),
        hovertemplate: "%{customdata}<br>%{y}<extra>" + entry.column + "</extra>"
      };
    });
    var layout = Object.assign({}, layoutBase, {
      barmode: "group", height: 380,
      xaxis: { automargin: true }, yaxis: { title: { text: "score (%)" }, rangemode: "tozero", automargin: true }
    });
    Plotly.newPlot(node, traces, layout, { responsive: true, displaylogo: false });
  }

  function drawCharts() {
    if (typeof Plotly === "undefined") return;
    var board = data("board-chart-data");
    var boardNode = document.getElementById("board-chart");
    if (board && boardNode && board.bars.length) boardChart(boardNode, board);

    var overview = data("overview-data");
    var legend = data("kind-legend");
    if (overview && legend) {
      overview.forEach(function (family) {
        var node = document.getElementById("overview-" + family.family);
        if (node) overviewChart(node, family, legend);
      });
    }
  }

  function copyButtons() {
    document.querySelectorAll("button.copy[data-copy-target]").forEach(function (button) {
      button.addEventListener("click", function () {
        var source = document.getElementById(button.getAttribute("data-copy-target"));
        if (!source) return;
        var text = source.textContent;
        var done = function () { button.textContent = "Copied"; setTimeout(function () { button.textContent = "Copy BibTeX"; }, 1500); };
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(text).then(done);
        } else {  // http:// pages: select the text and use the legacy command
          var range = document.createRange();
          range.selectNodeContents(source);
          var selection = window.getSelection();
          selection.removeAllRanges();
          selection.addRange(range);
          try { document.execCommand("copy"); done(); } catch (e) { /* the text stays selected */ }
        }
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () { drawCharts(); copyButtons(); });
})();
