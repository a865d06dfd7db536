/* Waybill console: bulk selection (tick, tick the page, select all matching) and queue shortcuts.
   j/k move, x ticks, a assigns to me, r opens resolve, o or Enter opens the row, / focuses search. */
(function () {
  "use strict";

  function rows() { return Array.from(document.querySelectorAll("table.queue tr[data-row]")); }

  function updateBar(bar) {
    var formId = bar.dataset.bulkForm;
    var boxes = Array.from(document.querySelectorAll('input.row-check[form="' + formId + '"]'));
    var ticked = boxes.filter(function (b) { return b.checked; }).length;
    var all = bar.querySelector(".select-all-input").value === "matching";
    var page = bar.querySelector(".select-page");
    bar.querySelector(".ticked").textContent = all ? "all matching" : ticked + " ticked";
    page.checked = boxes.length > 0 && ticked === boxes.length;
    bar.querySelector(".select-all-matching").hidden = all || !page.checked;
    bar.querySelector(".selected-matching").hidden = !all;
  }

  function initBars(root) {
    root.querySelectorAll(".bulk-bar").forEach(function (bar) {
      if (bar.dataset.ready) { return; }
      bar.dataset.ready = "1";
      var formId = bar.dataset.bulkForm;
      var input = bar.querySelector(".select-all-input");
      bar.querySelector(".select-page").addEventListener("change", function (e) {
        document.querySelectorAll('input.row-check[form="' + formId + '"]').forEach(function (b) { b.checked = e.target.checked; });
        if (!e.target.checked) { input.value = ""; }
        updateBar(bar);
      });
      bar.querySelector(".select-matching").addEventListener("click", function () { input.value = "matching"; updateBar(bar); });
      bar.querySelector(".clear-matching").addEventListener("click", function () { input.value = ""; updateBar(bar); });
      updateBar(bar);
    });
  }

  document.addEventListener("change", function (e) {
    if (!e.target.classList.contains("row-check")) { return; }
    var bar = document.querySelector('.bulk-bar[data-bulk-form="' + e.target.getAttribute("form") + '"]');
    if (bar) {
      if (!e.target.checked) { bar.querySelector(".select-all-input").value = ""; }
      updateBar(bar);
    }
  });

  // A second bulk form (bulk reroute) acts on the ticks of the first: copy them in on submit.
  document.addEventListener("submit", function (e) {
    var form = e.target;
    if (!form.classList || !form.classList.contains("mirror-ticks")) { return; }
    var source = form.dataset.ticksFrom;
    form.querySelectorAll("input.mirrored").forEach(function (i) { i.remove(); });
    function add(name, value) {
      var i = document.createElement("input");
      i.type = "hidden"; i.name = name; i.value = value; i.className = "mirrored"; form.appendChild(i);
    }
    document.querySelectorAll('input.row-check[form="' + source + '"]:checked').forEach(function (b) { add("ids", b.value); });
    document.querySelectorAll('input[form="' + source + '"][name="select_all"], input[form="' + source + '"][name="query"]').forEach(function (i) { add(i.name, i.value); });
  }, true);

  var current = -1;
  function mark(index) {
    var list = rows();
    if (!list.length) { return; }
    current = Math.max(0, Math.min(index, list.length - 1));
    list.forEach(function (r) { r.classList.remove("kbd-current"); });
    list[current].classList.add("kbd-current");
    list[current].scrollIntoView({ block: "nearest" });
  }

  document.addEventListener("keydown", function (e) {
    var t = e.target;
    if (e.ctrlKey || e.metaKey || e.altKey) { return; }
    if (t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName))) {
      if (e.key === "Escape") { t.blur(); }
      return;
    }
    var list = rows();
    var row = list[current];
    switch (e.key) {
      case "j": mark(current + 1); break;
      case "k": mark(current - 1); break;
      case "x": if (row) { var box = row.querySelector("input.row-check"); if (box) { box.click(); } } break;
      case "a": if (row) { var take = row.querySelector('[data-action="assign"]'); if (take) { take.click(); } } break;
      case "r":
        if (row) {
          var details = row.querySelector("details.resolve");
          if (details) { details.open = true; var note = details.querySelector("input[name=note]"); if (note) { note.focus(); } }
        }
        break;
      case "o": case "Enter": if (row) { var link = row.querySelector("a.open"); if (link) { link.click(); } } break;
      case "/": var q = document.querySelector("#id_q"); if (q) { q.focus(); } break;
      default: return;
    }
    e.preventDefault();
  });

  document.addEventListener("DOMContentLoaded", function () { initBars(document); });
  document.addEventListener("htmx:afterSwap", function (e) { current = -1; initBars(e.target); });
})();
