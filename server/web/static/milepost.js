// Milepost team page: enhancements only (the pages read fine without this script).
// - the feed stays live over server-sent events (/t/<team>/feed/live);
// - kudos are given without a reload (the form still works without JavaScript);
// - the review's Print button.
(function () {
  "use strict";
  var csrfMeta = document.querySelector('meta[name="csrf-token"]');
  var csrf = csrfMeta ? csrfMeta.getAttribute("content") : "";

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function kudosText(givers) {
    return givers.length ? givers.length + " kudos: " + givers.join(", ") : "No kudos yet";
  }

  function day(iso) {
    return iso.replace("T", " ").slice(0, 16);
  }

  function kudosForm(team, item) {
    var form = el("form", "kudos-form");
    form.method = "post";
    form.action = "/t/" + encodeURIComponent(team) + "/kudos";
    var token = el("input");
    token.type = "hidden"; token.name = "csrf"; token.value = csrf;
    var completion = el("input");
    completion.type = "hidden"; completion.name = "completion"; completion.value = item.id;
    var button = el("button", null, "Give kudos to " + item.actor);
    button.type = "submit";
    form.appendChild(token); form.appendChild(completion); form.appendChild(button);
    return form;
  }

  function renderItem(team, viewer, item) {
    var li = el("li", "item fresh kind-" + item.kind.replace(/\./g, "-"));
    li.id = "item-" + item.id;
    li.setAttribute("data-id", item.id);
    var line = el("p", "line");
    var time = el("time", null, day(item.occurred_at));
    time.setAttribute("datetime", item.occurred_at);
    line.appendChild(time);
    line.appendChild(document.createTextNode(" "));
    if (item.kind === "observation.recorded") {
      line.appendChild(el("span", "polarity polarity-" + item.polarity, item.polarity === "positive" ? "+" : "−"));
      line.appendChild(document.createTextNode(" "));
    }
    line.appendChild(el("span", "summary", item.summary));
    if (item.objective_title) line.appendChild(el("span", "muted", " · " + item.objective_title));
    if (item.visibility !== "team") line.appendChild(el("span", "tag", item.visibility));
    li.appendChild(line);
    if (item.kind === "milestone.completed") {
      var dl = el("dl", "answers");
      [["What was done", item.did], ["Why it mattered", item.why], ["Outcome", item.outcome]].forEach(function (pair) {
        dl.appendChild(el("dt", null, pair[0]));
        dl.appendChild(el("dd", null, pair[1] || "—"));
      });
      li.appendChild(dl);
      var kudos = el("div", "kudos");
      var givers = item.kudos || [];
      kudos.appendChild(el("span", "kudos-count", kudosText(givers)));
      if (item.actor !== viewer && givers.indexOf(viewer) < 0) kudos.appendChild(kudosForm(team, item));
      li.appendChild(kudos);
    } else if (item.kind === "checkin.recorded" && item.note) {
      li.appendChild(el("p", "note", "“" + item.note + "”"));
    } else if (item.kind === "observation.recorded" && item.text && item.text.length > 110) {
      li.appendChild(el("p", "note", item.text));
    }
    return li;
  }

  function updateKudos(completionId, givers, viewer) {
    var li = document.getElementById("item-" + completionId);
    if (!li) return;
    var count = li.querySelector(".kudos-count");
    if (count) count.textContent = kudosText(givers);
    if (givers.indexOf(viewer) >= 0) {
      var form = li.querySelector(".kudos-form");
      if (form) form.replaceWith(el("span", "muted", "you gave kudos"));
    }
  }

  function liveFeed(list) {
    if (!window.EventSource || !list.hasAttribute("data-live")) return;
    var team = list.getAttribute("data-team");
    var viewer = list.getAttribute("data-viewer");
    var after = list.getAttribute("data-after");
    var status = document.querySelector(".live-status");
    var url = "/t/" + encodeURIComponent(team) + "/feed/live?after=" + encodeURIComponent(after);
    var source = new EventSource(url);
    function say(text) { if (status) { status.hidden = false; status.textContent = text; } }
    source.addEventListener("ready", function () { say("● live"); list.setAttribute("data-ready", "1"); });
    source.addEventListener("feed.item", function (message) {
      var item = JSON.parse(message.data);
      if (document.getElementById("item-" + item.id)) return;
      var empty = list.querySelector(".empty");
      if (empty) empty.remove();
      list.insertBefore(renderItem(team, viewer, item), list.firstChild);
      if (item.kind === "kudos.given" && item.completion) {
        var li = document.getElementById("item-" + item.completion);
        var count = li && li.querySelector(".kudos-count");
        if (count && count.textContent.indexOf(item.actor) < 0) {
          var shown = count.textContent.split(": ")[1];
          var givers = shown ? shown.split(", ") : [];
          givers.push(item.actor);
          updateKudos(item.completion, givers, viewer);
        }
      }
    });
    source.onerror = function () { say("reconnecting…"); };
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.classList || !form.classList.contains("kudos-form") || !window.fetch) return;
    event.preventDefault();
    var button = form.querySelector("button");
    if (button) button.disabled = true;
    fetch(form.action, {
      method: "POST",
      headers: { "Accept": "application/json", "X-CSRF-Token": csrf },
      body: new URLSearchParams(new FormData(form)),
      credentials: "same-origin"
    }).then(function (response) {
      return response.json().then(function (data) { return { ok: response.ok, data: data }; });
    }).then(function (result) {
      var list = document.querySelector(".feed");
      var viewer = list ? list.getAttribute("data-viewer") : "";
      if (result.ok) {
        updateKudos(result.data.completion, result.data.kudos, viewer);
      } else {
        form.replaceWith(el("span", "problem", result.data.reason || result.data.error || "kudos refused"));
      }
    }).catch(function () { if (button) button.disabled = false; form.submit(); });
  });

  var list = document.querySelector(".feed");
  if (list) liveFeed(list);
  var printButton = document.querySelector(".print-button");
  if (printButton) {
    printButton.hidden = false;
    printButton.addEventListener("click", function () { window.print(); });
  }
})();
