// Postroom webmail: compose attachments are uploaded as soon as they are chosen, each with a progress bar.
// Each file goes to POST /compose/upload (XMLHttpRequest, for its upload progress events) and the form then
// carries its id in a hidden "upload" field. Without this script the files are posted with the form itself.
(function () {
  "use strict";
  var input = document.getElementById("attachments");
  var list = document.getElementById("uploads");
  var form = input && input.form;
  if (!input || !list || !form || !window.XMLHttpRequest || !window.FormData) { return; }
  var csrf = form.querySelector("input[name=csrf]").value;
  var maxFile = Number(input.getAttribute("data-max-file")) || Infinity;
  var submits = form.querySelectorAll("button[type=submit]");
  var pending = 0;
  var PARALLEL = 2;  // files sent at once (the server takes three per account at a time)
  var waiting = [];
  var active = 0;

  function busy(delta) {  // the form is not sent while an upload is still running
    pending += delta;
    for (var i = 0; i < submits.length; i++) { submits[i].disabled = pending > 0; }
  }
  function text(name, fileName) {
    return (list.getAttribute("data-text-" + name) || "").split("{name}").join(fileName || "");
  }
  function forget(id) {  // tell the server it may drop the spooled file; the row goes at once either way
    var body = new URLSearchParams();
    body.set("id", id);
    fetch("/compose/upload/remove", {method: "POST", headers: {"X-CSRF-Token": csrf}, body: body,
                                     credentials: "same-origin"}).catch(function () {});
  }
  function removable(li, name, onRemove) {
    var button = li.querySelector(".upload-remove");
    if (!button) {
      button = document.createElement("button");
      button.type = "button";
      button.className = "upload-remove";
      button.textContent = text("remove");
      button.setAttribute("aria-label", text("remove-name", name));
      li.appendChild(button);
    }
    button.addEventListener("click", function () {
      if (onRemove) { onRemove(); }
      if (li.getAttribute("data-id")) { forget(li.getAttribute("data-id")); }
      li.remove();
      input.focus();
    });
  }
  function fail(li, status, progress, message) {
    li.classList.add("upload-error");
    if (progress) { progress.remove(); }
    status.setAttribute("role", "alert");
    status.textContent = message;
  }

  function upload(file) {
    var li = document.createElement("li");
    var name = document.createElement("span");
    name.className = "upload-name";
    name.textContent = file.name;
    var status = document.createElement("span");
    status.className = "upload-status";
    li.appendChild(name);
    if (file.size > maxFile) {  // refused here at once; the server refuses it too
      li.appendChild(status);
      list.appendChild(li);
      fail(li, status, null, text("too-big", file.name));
      removable(li, file.name, null);
      return;
    }
    var progress = document.createElement("progress");
    progress.max = 100;
    progress.value = 0;
    progress.setAttribute("aria-label", text("progress", file.name));
    li.appendChild(progress);
    li.appendChild(status);
    list.appendChild(li);
    var xhr = new XMLHttpRequest();
    var running = true;
    var started = false;
    function finished() {
      if (!running) { return; }
      running = false;
      busy(-1);
      if (started) { active -= 1; next(); }
    }
    removable(li, file.name, function () {
      if (!started) { waiting = waiting.filter(function (go) { return go !== start; }); finished(); }
      else if (running) { xhr.abort(); }
    });
    xhr.upload.addEventListener("progress", function (ev) {
      if (ev.lengthComputable && ev.total > 0) { progress.value = Math.floor(ev.loaded * 100 / ev.total); }
    });
    xhr.addEventListener("load", function () {
      finished();
      var answer = {};
      try { answer = JSON.parse(xhr.responseText); } catch (e) { answer = {}; }
      if (xhr.status === 201 && answer.id) {
        progress.value = 100;
        status.textContent = text("done");
        li.setAttribute("data-id", answer.id);
        var hidden = document.createElement("input");
        hidden.type = "hidden";
        hidden.name = "upload";
        hidden.value = answer.id;
        li.appendChild(hidden);
      } else {
        fail(li, status, progress, answer.error || text("failed"));
      }
    });
    xhr.addEventListener("error", function () { finished(); fail(li, status, progress, text("failed")); });
    xhr.addEventListener("abort", finished);
    function start() {
      started = true;
      active += 1;
      var data = new FormData();
      data.append("file", file, file.name);
      xhr.open("POST", "/compose/upload");
      xhr.setRequestHeader("X-CSRF-Token", csrf);
      xhr.send(data);
    }
    busy(1);
    waiting.push(start);
    next();
  }
  function next() {
    while (active < PARALLEL && waiting.length) { waiting.shift()(); }
  }

  function chosen() {
    var files = Array.prototype.slice.call(input.files || []);
    input.value = "";  // the files go by upload, not again with the form
    files.forEach(upload);
  }
  input.addEventListener("change", chosen);
  if (input.files && input.files.length) { chosen(); }  // chosen before this script ran (a slow link)
  var shown = list.querySelectorAll("li[data-id]");  // uploads kept when the page came back with an error
  for (var i = 0; i < shown.length; i++) {
    removable(shown[i], shown[i].querySelector(".upload-name").textContent, null);
  }
})();
