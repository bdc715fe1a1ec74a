/* Submission form, progressive enhancement: show only the fields that apply to the chosen source,
   suggest model names, show what a name or Hub id resolves to (family, preprocessing, features)
   before anything is queued, and refuse an over-limit file before it is uploaded. Without this
   script every field shows and the server checks everything anyway. */
(function () {
  "use strict";
  var form = document.getElementById("submission-form");
  if (!form) { return; }
  var radios = form.querySelectorAll("input[name=source]");
  var groups = form.querySelectorAll(".source-group[data-sources]");
  form.classList.add("js-sources");

  function chosenSource() {
    for (var i = 0; i < radios.length; i++) { if (radios[i].checked) { return radios[i].value; } }
    return "";
  }

  function showGroups() {
    var source = chosenSource();
    groups.forEach(function (group) {
      var applies = group.dataset.sources.split(" ").indexOf(source) >= 0;
      group.hidden = !applies;
      // A file chosen for another source is not sent along (it may be large); other inputs stay as they are.
      group.querySelectorAll("input[type=file]").forEach(function (input) { input.disabled = !applies; });
    });
  }

  function humanSize(bytes) {
    var units = ["bytes", "KB", "MB", "GB", "TB"], i = 0;
    while (bytes >= 1024 && i < units.length - 1) { bytes /= 1024; i++; }
    return (i ? bytes.toFixed(1) : bytes) + " " + units[i];
  }

  // The same words as the server's refusal, shown under the file input.
  function checkFileSize(input) {
    var limit = Number(input.dataset.maxBytes), file = input.files && input.files[0];
    var field = input.closest(".field"), note = field.querySelector(".client-error");
    var tooLarge = Boolean(limit && file && file.size > limit);
    if (tooLarge && !note) {
      note = document.createElement("ul");
      note.className = "errorlist client-error";
      note.setAttribute("role", "alert");
      note.appendChild(document.createElement("li"));
      field.appendChild(note);
    }
    if (note) {
      note.hidden = !tooLarge;
      note.firstChild.textContent = tooLarge ? "The file (" + humanSize(file.size) +
        ") is larger than the upload limit of " + humanSize(limit) + "." : "";
    }
    field.classList.toggle("has-error", tooLarge || Boolean(field.querySelector(".errorlist:not(.client-error)")));
    return !tooLarge;
  }

  // ---- model names: suggestions, and what a name resolves to before anything is queued ----------
  var preview = document.getElementById("model-preview");
  var nameInputs = form.querySelectorAll("input.model-name");
  var readout = form.querySelector("select[name=readout]");
  var namesLoaded = false, timer = null, asked = "";

  function loadNames() {
    if (namesLoaded || !form.dataset.namesUrl) { return; }
    namesLoaded = true;
    fetch(form.dataset.namesUrl, {credentials: "same-origin"}).then(function (r) { return r.json(); }).then(function (names) {
      var models = document.getElementById("model-names"), archs = document.getElementById("architecture-names");
      var add = function (list, values) {
        var fragment = document.createDocumentFragment();
        values.forEach(function (value) { var o = document.createElement("option"); o.value = value; fragment.appendChild(o); });
        list.appendChild(fragment);
      };
      add(archs, names.libraries);
      add(models, names.engine.filter(function (n) { return names.builtin.indexOf(n) < 0; }).concat(names.libraries));
    }).catch(function () { namesLoaded = false; });
  }

  function describe(about) {
    var pre = about.preprocessing, parts = [];
    parts.push(about.family + (about.repo ? " · " + about.repo + " at commit " + about.commit.slice(0, 12) : ""));
    parts.push("preprocessing: resize " + (pre.resize_mode === "squash" ? "to " + pre.resize_size + "×" + pre.resize_size
      : "the shorter side to " + pre.resize_size) + ", centre crop " + pre.input_size + ", " + pre.interpolation +
      ", mean " + pre.mean.map(function (v) { return v.toFixed(3); }).join("/") +
      ", std " + pre.std.map(function (v) { return v.toFixed(3); }).join("/"));
    parts.push(about.readouts.length ? "features: " + about.readouts.join(", ") + " (default " + about.default_readout + ")"
      : "features: the penultimate layer, or a layer by name");
    return parts;
  }

  function showPreview(about, error) {
    if (!preview) { return; }
    preview.hidden = false;
    preview.classList.toggle("has-error", Boolean(error));
    preview.textContent = "";
    (error ? [error] : describe(about)).forEach(function (line) {
      var p = document.createElement("p");
      p.textContent = line;   // names come from users and repositories: text, never markup
      preview.appendChild(p);
    });
    if (readout && about) {   // only the readouts the family offers can be chosen
      Array.prototype.forEach.call(readout.options, function (option) {
        option.disabled = Boolean(option.value) && about.readouts.indexOf(option.value) < 0;
      });
      if (readout.selectedOptions[0] && readout.selectedOptions[0].disabled) { readout.value = ""; }
    }
  }

  function askPreview(input) {
    var name = input.value.trim();
    if (!name || name === asked || !form.dataset.previewUrl) { return; }
    asked = name;
    showPreview(null, "Resolving " + name + "…");
    preview.classList.remove("has-error");
    fetch(form.dataset.previewUrl + "?name=" + encodeURIComponent(name), {credentials: "same-origin"})
      .then(function (r) { return r.json(); })
      .then(function (body) { if (asked === name) { showPreview(body.error ? null : body, body.error); } })
      .catch(function () { if (asked === name) { showPreview(null, "The preview could not be fetched; the server checks the name on submission."); } });
  }

  nameInputs.forEach(function (input) {
    input.addEventListener("focus", loadNames);
    input.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(function () { askPreview(input); }, 400); });
    input.addEventListener("change", function () { askPreview(input); });
  });
  function previewChosen() {
    var source = chosenSource(), input = form.querySelector(source === "weights" ? "input[name=architecture]" : "input[name=builtin_model]");
    asked = "";
    if (input && (source === "builtin" || source === "weights")) { askPreview(input); }
  }

  radios.forEach(function (radio) { radio.addEventListener("change", showGroups); });
  radios.forEach(function (radio) { radio.addEventListener("change", previewChosen); });
  var files = form.querySelectorAll("input[type=file][data-max-bytes]");
  files.forEach(function (input) { input.addEventListener("change", function () { checkFileSize(input); }); });
  form.addEventListener("submit", function (event) {
    var ok = true;
    files.forEach(function (input) { if (!input.disabled && !checkFileSize(input)) { ok = false; } });
    if (!ok) { event.preventDefault(); }
  });
  showGroups();
  previewChosen();
})();
