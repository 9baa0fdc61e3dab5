// Postroom webmail: the compose form's simple rich-text editor (bold, italic, underline, lists, links).
// Without this script the plain textarea is used. The markup is posted in body_html and cleaned by the
// server (webmail/richtext.py); nothing here is trusted for safety.
(function () {
  "use strict";
  var form = document.querySelector("main.compose form");
  var editor = document.getElementById("editor");
  var toolbar = document.getElementById("editor-toolbar");
  var textarea = document.getElementById("body");
  var html = document.getElementById("body_html");
  if (!form || !editor || !toolbar || !textarea || !html || typeof document.execCommand !== "function") { return; }

  function textToHtml(text) {
    var div = document.createElement("div");
    div.textContent = text;
    return div.innerHTML.replace(/\n/g, "<br>");
  }
  editor.innerHTML = html.value || textToHtml(textarea.value);
  // The editor replaces the textarea: its text still goes in "body" (a hidden field), the label names the editor.
  var plain = document.createElement("input");
  plain.type = "hidden";
  plain.name = "body";
  var focus = textarea.hasAttribute("autofocus");
  textarea.replaceWith(plain);
  var label = document.getElementById("body-label");
  label.removeAttribute("for");
  label.addEventListener("click", function () { editor.focus(); });
  editor.hidden = false;
  toolbar.hidden = false;
  if (focus) { editor.focus(); }

  toolbar.addEventListener("mousedown", function (ev) { ev.preventDefault(); });  // keep the selection
  toolbar.addEventListener("click", function (ev) {
    var button = ev.target.closest("button[data-cmd]");
    if (!button) { return; }
    var cmd = button.getAttribute("data-cmd");
    var value = null;
    if (cmd === "createLink") {
      value = window.prompt(button.getAttribute("data-prompt"), "https://");
      if (!value || !/^(https?:|mailto:)/i.test(value.trim())) { return; }
      value = value.trim();
    }
    editor.focus();
    document.execCommand(cmd, false, value);
  });

  function sync() {
    html.value = editor.innerHTML;
    plain.value = editor.innerText;
  }
  form.addEventListener("submit", sync);
  form.addEventListener("formdata", sync);
})();
