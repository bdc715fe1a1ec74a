/* Status page: polls the submission's status JSON and updates each job's badge, bar, label, log and score.
   Extraction runs once per split (train, then test), so the bar fills twice: the label names the split. */
(function () {
  "use strict";
  var root = document.getElementById("jobs");
  if (!root) { return; }
  var url = root.dataset.statusUrl;

  function fmtSeconds(s) {
    s = Math.round(s);
    return s >= 60 ? Math.floor(s / 60) + " min " + (s % 60) + " s" : s + " s";
  }

  function setText(el, selector, text) {
    var node = el.querySelector(selector);
    if (node) { node.textContent = text; }
  }

  function fillResult(container, result) {
    container.textContent = "";
    var value = document.createElement("span");
    value.className = "job-score-value";
    var strong = document.createElement("strong");
    strong.className = "job-score";
    strong.textContent = result.score.toFixed(2);
    var unit = document.createElement("span");
    unit.className = "job-unit";
    unit.textContent = result.unit;
    value.append(strong, " ", unit);
    var metric = document.createElement("span");
    metric.className = "job-metric";
    metric.textContent = result.metric || "";
    var links = document.createElement("span");
    links.className = "job-links";
    var bundle = document.createElement("a");
    bundle.href = result.bundle_url; bundle.textContent = "reproduction bundle";
    links.append(bundle);
    if (result.board_url) {
      var board = document.createElement("a");
      board.href = result.board_url; board.textContent = "live board";
      links.append(" · ", board);
    }
    container.append(value, " ", metric, " ", links);
  }

  // one line per protocol: score, 95% interval, protocol, bundle (text only: names are users')
  function fillResults(list, results) {
    results.forEach(function (r) {
      var item = document.createElement("li");
      item.dataset.protocol = r.protocol;
      var score = document.createElement("strong");
      score.textContent = r.score.toFixed(2);
      item.append(score, " " + r.unit);
      if (r.ci_low !== null) {
        var ci = document.createElement("span");
        ci.className = "muted";
        ci.textContent = " (95%: " + r.ci_low.toFixed(2) + "–" + r.ci_high.toFixed(2) + ")";
        item.append(ci);
      }
      item.append(" · " + r.title + (r.detail ? ", " + r.detail : "") + " · ");
      var bundle = document.createElement("a");
      bundle.href = r.bundle_url; bundle.textContent = "bundle";
      item.append(bundle);
      list.appendChild(item);
    });
  }

  function render(job) {
    var el = document.getElementById("job-" + job.id);
    if (!el) { return; }
    el.dataset.status = job.status;
    var status = el.querySelector(".job-status");
    status.textContent = job.status_label;
    status.dataset.status = job.status;
    var extracting = job.stage === "extracting";
    el.querySelector(".job-progress").value = job.percent;
    setText(el, ".job-percent", job.percent + "%");
    setText(el, ".job-stage", job.stage_label || (job.status === "queued" ? "waiting for a worker" : ""));
    setText(el, ".job-split", extracting && job.message ? "(" + job.message + ")" : "");
    setText(el, ".job-counts", job.counts || "");
    setText(el, ".job-speed", extracting && job.images_per_second ? job.images_per_second + " images/s" : "");
    setText(el, ".job-eta", job.eta_seconds !== null ? "ETA " + fmtSeconds(job.eta_seconds) : "");
    var place = el.querySelector(".job-place");
    if (place) {
      place.hidden = !job.queue_place;
      if (job.queue_place) { place.querySelector("a").textContent = job.queue_place.label; }
    }
    var broker = el.querySelector(".job-broker");
    if (broker && !job.waiting_for_broker) { broker.hidden = true; }
    var error = el.querySelector(".job-error");
    error.textContent = job.error; error.hidden = !job.error;
    var details = el.querySelector(".job-details");
    if (details && job.error_details) { details.hidden = false; details.querySelector("pre").textContent = job.error_details; }
    var log = el.querySelector(".job-log");
    var atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.textContent = job.log_tail.join("\n");
    if (atBottom) { log.scrollTop = log.scrollHeight; }  // follow the tail unless the reader scrolled up
    var cancel = el.querySelector(".job-cancel");
    if (cancel && !job.cancellable) { cancel.hidden = true; }
    var result = el.querySelector(".job-result");
    if (job.result && !result.querySelector(".job-score")) { fillResult(result, job.result); }
    var list = el.querySelector(".job-results");
    if (list && job.results.length && !list.children.length) { fillResults(list, job.results); }
  }

  function poll() {
    fetch(url, {headers: {"Accept": "application/json"}, credentials: "same-origin"})
      .then(function (r) { return r.json(); })
      .then(function (data) {
        data.jobs.forEach(render);
        if (!data.finished) { setTimeout(poll, 1000); } else { root.dataset.finished = "1"; }
      })
      .catch(function () { setTimeout(poll, 3000); });
  }

  document.querySelectorAll(".job-log").forEach(function (log) { log.scrollTop = log.scrollHeight; });
  poll();
})();
