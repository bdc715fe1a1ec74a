/* Submission form, progressive enhancement: show only the fields that apply to the chosen source,
   and refuse an over-limit file before it is uploaded. Without this script every field shows and
   the server checks everything anyway. */
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

  radios.forEach(function (radio) { radio.addEventListener("change", showGroups); });
  var files = form.querySelectorAll("input[type=file][data-max-bytes]");
  files.forEach(function (input) { input.addEventListener("change", function () { checkFileSize(input); }); });
  form.addEventListener("submit", function (event) {
    var ok = true;
    files.forEach(function (input) { if (!input.disabled && !checkFileSize(input)) { ok = false; } });
    if (!ok) { event.preventDefault(); }
  });
  showGroups();
})();
