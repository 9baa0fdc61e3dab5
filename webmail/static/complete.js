// Recipient completion from the organisation address book for inputs with data-complete="addresses".
// The input is an ARIA 1.2 combobox with a listbox popup (WAI-ARIA APG combobox pattern):
// typing asks /addressbook/complete for the text after the last comma; Up/Down move,
// Enter picks, Escape closes; a pick replaces only the last recipient.
(function () {
  "use strict";
  var DELAY_MS = 150; // typing pause before asking the server
  var MIN_CHARS = 1;
  var counter = 0;
  var LIST_NAMES = { zh: "地址建议", en: "Address suggestions" };

  function lastPart(value) {
    var i = value.lastIndexOf(",");
    return { head: i < 0 ? "" : value.slice(0, i + 1) + " ", text: value.slice(i + 1).trim() };
  }

  function attach(input) {
    var id = "complete-list-" + (++counter);
    var list = document.createElement("ul");
    list.id = id;
    list.className = "complete-list";
    list.setAttribute("role", "listbox");
    // Its own name (not the input's label, which names the input alone).
    list.setAttribute("aria-label", LIST_NAMES[document.documentElement.lang.slice(0, 2)] || LIST_NAMES.en);
    list.hidden = true;
    input.insertAdjacentElement("afterend", list);
    input.setAttribute("role", "combobox");
    input.setAttribute("aria-autocomplete", "list");
    input.setAttribute("aria-expanded", "false");
    input.setAttribute("aria-controls", id);
    var items = [];
    var active = -1;
    var timer = null;
    var asked = 0;

    function close() {
      list.hidden = true;
      list.textContent = "";
      items = [];
      active = -1;
      input.setAttribute("aria-expanded", "false");
      input.removeAttribute("aria-activedescendant");
    }

    function mark(i) {
      active = i;
      Array.prototype.forEach.call(list.children, function (li, n) {
        li.setAttribute("aria-selected", n === i ? "true" : "false");
      });
      if (i >= 0) {
        input.setAttribute("aria-activedescendant", list.children[i].id);
        list.children[i].scrollIntoView({ block: "nearest" });
      } else {
        input.removeAttribute("aria-activedescendant");
      }
    }

    function pick(i) {
      var parts = lastPart(input.value);
      input.value = parts.head + items[i].address;
      close();
      input.focus();
    }

    function show(found) {
      close();
      items = found;
      if (!items.length) { return; }
      items.forEach(function (item, n) {
        var li = document.createElement("li");
        li.id = id + "-" + n;
        li.setAttribute("role", "option");
        li.setAttribute("aria-selected", "false");
        li.dataset.address = item.address;
        var text = (item.name ? item.name + " <" + item.address + ">" : item.address);
        if (item.department) { text += " · " + item.department; }
        li.textContent = text;
        li.addEventListener("mousedown", function (e) { e.preventDefault(); pick(n); });
        list.appendChild(li);
      });
      list.hidden = false;
      input.setAttribute("aria-expanded", "true");
    }

    function ask() {
      var text = lastPart(input.value).text;
      if (text.length < MIN_CHARS) { close(); return; }
      var mine = ++asked;
      fetch("/addressbook/complete?q=" + encodeURIComponent(text), { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : []; })
        .then(function (found) { if (mine === asked) { show(found); } })
        .catch(function () { close(); });
    }

    input.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(ask, DELAY_MS);
    });
    input.addEventListener("keydown", function (e) {
      if (list.hidden || !items.length) { return; }
      if (e.key === "ArrowDown") {
        e.preventDefault(); mark((active + 1) % items.length);
      } else if (e.key === "ArrowUp") {
        e.preventDefault(); mark(active <= 0 ? items.length - 1 : active - 1);
      } else if (e.key === "Enter" && active >= 0) {
        e.preventDefault(); pick(active);
      } else if (e.key === "Escape") {
        e.preventDefault(); close();
      }
    });
    input.addEventListener("blur", close);
  }

  document.addEventListener("DOMContentLoaded", function () {
    Array.prototype.forEach.call(document.querySelectorAll("input[data-complete='addresses']"), attach);
  });
}());
