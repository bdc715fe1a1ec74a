/* Shelfmark page behaviour: plotly charts from <script type="application/json"> data, copy buttons. */
(function () {
  "use strict";

  function data(id) {
    var node = document.getElementById(id);
    return node ? JSON.parse(node.textContent) : null;
  }

  // Plotly reads tick labels as a little HTML; names from the registry must show as written.
  function escapeLabel(text) {
    return String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }

  // Greedy word wrap into at most `maxLines` lines of `width` characters; the cut ends in "…".
  // Returns the lines; callers join them with <br> for plotly.
  function wrapWords(text, width, maxLines) {
    var words = String(text).split(/\s+/), lines = [], line = "";
    for (var i = 0; i < words.length; i++) {
      var word = words[i];
      while (word.length > width) {  // a single word longer than a line is split
        if (line) { lines.push(line); line = ""; }
        lines.push(word.slice(0, width - 1) + "-");
        word = word.slice(width - 1);
      }
      if (!line) line = word;
      else if (line.length + 1 + word.length <= width) line += " " + word;
      else { lines.push(line); line = word; }
    }
    if (line) lines.push(line);
    if (lines.length > maxLines) {
      lines = lines.slice(0, maxLines);
      var last = lines[maxLines - 1];
      lines[maxLines - 1] = (last.length >= width ? last.slice(0, width - 1) : last) + "…";
    }
    return lines;
  }

  var PHONE = 600;  // below this chart width, fewer label characters, no plotly legend (the page has one)

  function baseLayout(width) {
    var narrow = width < PHONE;
    return {
      autosize: true, font: { size: narrow ? 11 : 12 }, showlegend: !narrow,
      margin: { l: 8, r: narrow ? 12 : 20, t: narrow ? 10 : 30, b: 40 },
      legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom" },
      hoverlabel: { align: "left" }
    };
  }

  var config = { responsive: true, displaylogo: false, displayModeBar: false };

  // Dataset page: one horizontal bar per result, best at the top, coloured by kind.
  // Method names wrap onto two lines, cut with "…" beyond; the full name is in the hover text.
  function boardChart(node, chart) {
    var width = node.clientWidth || 800;
    var labelChars = Math.max(16, Math.min(48, Math.floor(width * 0.42 / 6.5)));
    var lines = [];
    var labels = chart.bars.map(function (bar, i) {
      var name = bar.rank_group + ". " + bar.method + (bar.protocol ? " · " + bar.protocol : "") +
        (bar.unverified ? " †" : "");
      var wrapped = wrapWords(name, labelChars, 2);
      lines.push(wrapped.length);
      return wrapped.map(escapeLabel).join("<br>");
    });
    var kinds = [];
    chart.bars.forEach(function (bar) { if (kinds.indexOf(bar.kind) < 0) kinds.push(bar.kind); });
    var traces = kinds.map(function (kind) {
      var items = chart.bars.map(function (bar, i) { return { bar: bar, label: labels[i], rank: i + 1 }; })
                            .filter(function (item) { return item.bar.kind === kind; });
      // measured scores carry their 95% interval as an error bar; numbers from papers have none
      var measured = items.some(function (item) { return item.bar.ci_low !== null; });
      return {
        type: "bar", orientation: "h", name: items[0].bar.kind_label,
        x: items.map(function (item) { return item.bar.score; }),
        y: items.map(function (item) { return item.label; }),
        error_x: measured ? {
          type: "data", symmetric: false, color: "#1d2329", thickness: 1.5, width: 4,
          array: items.map(function (item) { return item.bar.ci_high === null ? null : item.bar.ci_high - item.bar.score; }),
          arrayminus: items.map(function (item) { return item.bar.ci_low === null ? null : item.bar.score - item.bar.ci_low; })
        } : undefined,
        customdata: items.map(function (item) {
          var bar = item.bar;
          return escapeLabel(bar.rank_group + ". " + bar.method + (bar.unverified ? " † unverified" : "") +
            (bar.protocol ? " (" + bar.protocol + ")" : " (reported)") +
            (bar.ci_low !== null ? " · 95%: " + bar.ci_low.toFixed(2) + "–" + bar.ci_high.toFixed(2) : ""));
        }),
        marker: { color: items[0].bar.colour },
        hovertemplate: "%{customdata}<br>%{x}" + escapeLabel(chart.unit) + "<extra>" + escapeLabel(items[0].bar.kind_label) + "</extra>"
      };
    });
    var layout = baseLayout(width);
    var barRows = lines.reduce(function (sum, n) { return sum + (n > 1 ? 1.5 : 1); }, 0);
    layout.height = Math.max(200, Math.round((layout.showlegend ? 110 : 80) + 30 * barRows));
    layout.bargap = 0.25;
    layout.yaxis = { categoryorder: "array", categoryarray: labels.slice().reverse(), automargin: true, ticks: "" };
    layout.xaxis = { title: { text: escapeLabel(chart.title + " (" + chart.unit + ")") }, rangemode: "tozero",
                     automargin: true, fixedrange: true };
    layout.yaxis.fixedrange = true;
    return { traces: traces, layout: layout };
  }

  // Overview page: per task family, the best score of each kind per dataset. Wide screens get grouped
  // columns; phones get grouped horizontal bars, so dataset names read across instead of up the page.
  function overviewChart(node, family, legend) {
    var width = node.clientWidth || 800;
    var horizontal = width < PHONE;
    var perDataset = horizontal ? Math.floor(width * 0.4 / 6.2) : Math.floor((width - 80) / family.datasets.length / 7);
    var labelChars = Math.max(12, Math.min(32, perDataset));
    var categories = family.datasets.map(function (d) {
      var metric = "(" + d.metric + (d.higher_is_better ? "" : ", lower is better") + ")";
      var name = wrapWords(d.name.split(" (")[0], labelChars, 2).map(escapeLabel).join("<br>");
      return name + "<br><span style='font-size:0.85em'>" + escapeLabel(metric) + "</span>";
    });
    var traces = legend.map(function (entry) {
      var scores = family.datasets.map(function (d) { return d.best[entry.kind] ? d.best[entry.kind].score : null; });
      var trace = {
        type: "bar", name: entry.column, marker: { color: entry.colour },
        customdata: family.datasets.map(function (d) {
          return escapeLabel(d.name) + "<br>" + (d.best[entry.kind] ? escapeLabel(d.best[entry.kind].method) : "no result");
        }),
        hovertemplate: "%{customdata}<br>" + (horizontal ? "%{x}" : "%{y}") + "<extra>" + escapeLabel(entry.column) + "</extra>"
      };
      if (horizontal) { trace.orientation = "h"; trace.y = categories; trace.x = scores; }
      else { trace.x = categories; trace.y = scores; }
      return trace;
    });
    var layout = baseLayout(width);
    layout.barmode = "group";
    var scoreAxis = { title: { text: "score (%)" }, rangemode: "tozero", automargin: true, fixedrange: true };
    var nameAxis = { automargin: true, fixedrange: true, tickangle: 0 };
    if (horizontal) {
      nameAxis.autorange = "reversed";  // the first dataset at the top, as in the table
      layout.yaxis = nameAxis; layout.xaxis = scoreAxis;
      layout.height = 70 + 70 * family.datasets.length;
      layout.bargap = 0.2;
    } else {
      layout.xaxis = nameAxis; layout.yaxis = scoreAxis;
      layout.height = 380;
      layout.bargap = family.datasets.length < 3 ? 0.45 : 0.2;  // two datasets should not fill the page with bars
    }
    return { traces: traces, layout: layout };
  }

  // Draw (or redraw) every chart of the page; labels depend on the width, so a resize that changes
  // the width redraws them.
  var drawn = [];

  function draw(node, build) {
    var figure = build(node);
    node.dataset.drawnWidth = String(node.clientWidth);
    Plotly.react(node, figure.traces, figure.layout, config);
  }

  function drawCharts() {
    if (typeof Plotly === "undefined") return;
    var board = data("board-chart-data");
    var boardNode = document.getElementById("board-chart");
    if (board && boardNode && board.bars.length) {
      drawn.push({ node: boardNode, build: function (node) { return boardChart(node, board); } });
    }
    var overview = data("overview-data");
    var legend = data("kind-legend");
    if (overview && legend) {
      overview.forEach(function (family) {
        var node = document.getElementById("overview-" + family.family);
        if (node && family.datasets.length) {
          drawn.push({ node: node, build: function (n) { return overviewChart(n, family, legend); } });
        }
      });
    }
    drawn.forEach(function (chart) { draw(chart.node, chart.build); });

    var pending = null;
    window.addEventListener("resize", function () {
      clearTimeout(pending);
      pending = setTimeout(function () {
        drawn.forEach(function (chart) {
          if (Math.abs(chart.node.clientWidth - Number(chart.node.dataset.drawnWidth)) > 40) draw(chart.node, chart.build);
        });
      }, 250);
    });
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
