/* flask-refiner-segment: a little progressive enhancement for its pages
   (served from the extension's blueprint; the pages work without it).
   - forms with data-confirm ask before they are sent;
   - the rule builder shows the fields of each row's kind and previews the
     segment (count, sample, errors on their rows) as you edit. */
(function () {
  "use strict";

  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
    }
  });

  var form = document.getElementById("segment-form");
  if (!form) {
    return;
  }
  form.classList.add("rs-js");

  var PLACEHOLDERS = {
    trait: ["trait key, e.g. plan", "value"],
    account_trait: ["account trait key, e.g. plan", "value"],
    event: ["event name, e.g. Order Completed", "times"],
    answer: ["question key, e.g. how_likely", "value"],
    survey_completed: ["", ""],
    nps_group: ["", "promoter, passive or detractor"]
  };

  function setUpRow(row) {
    var kind = row.querySelector(".rs-f-kind");
    var op = row.querySelector(".rs-f-op");
    if (!kind || !op) {
      return;
    }
    function update() {
      var isEvent = kind.value === "event";
      row.setAttribute("data-kind", kind.value);
      Array.prototype.forEach.call(op.options, function (option) {
        option.hidden = (option.getAttribute("data-for") === "event") !== isEvent;
      });
      if (op.selectedOptions[0] && op.selectedOptions[0].hidden) {
        op.value = isEvent ? "at_least" : "eq";
      }
      var noOp = kind.value === "nps_group" || kind.value === "survey_completed";
      row.setAttribute("data-op", noOp ? "" : op.value);
      var texts = PLACEHOLDERS[kind.value] || ["key", "value"];
      row.querySelector(".rs-f-key").placeholder = texts[0];
      row.querySelector(".rs-f-value").placeholder = texts[1];
      row.querySelector(".rs-f-survey").placeholder =
        kind.value === "nps_group" ? "survey id (optional)" : "survey id";
    }
    kind.addEventListener("change", update);
    op.addEventListener("change", update);
    update();
  }
  Array.prototype.forEach.call(form.querySelectorAll(".rs-row"), setUpRow);

  var url = form.getAttribute("data-preview-url");
  var body = document.getElementById("preview-body");
  var timer = null;
  var sent = 0;

  function fill(list, messages) {
    list.textContent = "";
    messages.forEach(function (text) {
      var li = document.createElement("li");
      li.textContent = text;
      list.appendChild(li);
    });
  }

  function showErrors(byRow, general) {
    Array.prototype.forEach.call(form.querySelectorAll(".rs-row-errors"), function (list) {
      var id = list.id.slice("errors-".length);
      fill(list, byRow[id] || []);
      list.parentNode.classList.toggle("rs-invalid", Boolean(byRow[id]));
    });
    var top = document.getElementById("builder-errors");
    if (top) {
      fill(top, general);
    }
  }

  function showPreview(data) {
    body.textContent = "";
    var p = document.createElement("p");
    var strong = document.createElement("strong");
    strong.id = "preview-count";
    strong.textContent = data.count;
    p.appendChild(strong);
    p.appendChild(document.createTextNode(
      data.count === 1 ? " matching user." : " matching users."));
    body.appendChild(p);
    var ul = document.createElement("ul");
    ul.id = "preview-sample";
    fill(ul, data.sample);
    body.appendChild(ul);
    var json = document.getElementById("rules-json");
    if (json && data.rules) {
      json.textContent = data.rules;
    }
  }

  function showInvalid(data) {
    showErrors(data.errors || {}, data.form_errors || []);
    body.textContent = "";
    var p = document.createElement("p");
    p.className = "rs-help";
    p.id = "preview-invalid";
    p.textContent = "Fix the conditions marked in red to see the matching users.";
    body.appendChild(p);
  }

  function preview() {
    var mine = ++sent;
    fetch(url, { method: "POST", body: new FormData(form), credentials: "same-origin" })
      .then(function (response) {
        return response.json().then(function (data) {
          return { ok: response.ok, data: data };
        });
      })
      .then(function (answer) {
        if (mine !== sent) {
          return; // an older answer arriving late
        }
        if (answer.ok) {
          showErrors({}, []);
          showPreview(answer.data);
        } else {
          showInvalid(answer.data);
        }
        form.setAttribute("data-previewed", String(mine));
      })
      .catch(function () {});
  }

  function later() {
    clearTimeout(timer);
    timer = setTimeout(preview, 300);
  }
  form.addEventListener("input", later);
  form.addEventListener("change", later);
  preview();
})();
