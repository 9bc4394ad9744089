// Moorage web UI: progressive enhancement only. Every page works without this file; it adds
// the Copy buttons next to pull commands and new token secrets.
"use strict";

function copyFrom(input, button) {
  var done = function () {
    button.textContent = "Copied";
    button.setAttribute("aria-live", "polite");
    window.setTimeout(function () { button.textContent = "Copy"; }, 2000);
  };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(input.value).then(done, function () {
      input.select();
    });
    return;
  }
  // Over plain HTTP on a non-local address the clipboard API is not offered: select the
  // text so that one keystroke copies it.
  input.focus();
  input.select();
  try {
    if (document.execCommand("copy")) {
      done();
    }
  } catch (e) {
    // Leave the selection for the user to copy.
  }
}

document.addEventListener("DOMContentLoaded", function () {
  var buttons = document.querySelectorAll("button[data-copy]");
  buttons.forEach(function (button) {
    var input = document.getElementById(button.getAttribute("data-copy"));
    if (!input) {
      return;
    }
    button.hidden = false;
    button.addEventListener("click", function () { copyFrom(input, button); });
  });
});
