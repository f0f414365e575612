// The explanation page. Data from the server and from the user is only ever put in the page
// as text (textContent, option.value, dataset), never parsed as HTML.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const SHOWN_PAIRS = 20; // bars drawn before "show all": a Criteo model has 741 pairs
  const state = { form: null, fields: new Map(), importance: null, allPairs: false, last: null, example: null };

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // Every number on the page goes through these two: fixed digits, and a true minus sign
  // (U+2212) where a value rounds to below zero, as in the signed contributions.
  function fixed(x, digits = 4) {
    const text = Math.abs(Number(x)).toFixed(digits);
    return Number(x) < 0 && Number(text) !== 0 ? `\u2212${text}` : text;
  }
  const signed = (x) => (Number(x) >= 0 ? `+${fixed(x)}` : fixed(x));
  const numeric = (field) => field.kind === "numeric" || field.kind === "bucketized";
  const shown = (value) => (Array.isArray(value) ? value.join(", ") : String(value));

  async function getJSON(url, options) {
    const response = await fetch(url, options);
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null; // not JSON: reported by status below
    }
    if (!response.ok) {
      throw new Error(body && body.error ? String(body.error) : `${url}: HTTP ${response.status}`);
    }
    return body;
  }

  // --- the form ------------------------------------------------------------------------

  function hintOf(field) {
    if (field.kind === "numeric") return `number (centred on ${+Number(field.center).toPrecision(4)})`;
    if (field.kind === "bucketized") return `number, in ${field.values_total} buckets`;
    const more = field.values_total > field.values.length ? `; the ${field.values.length} most frequent suggested` : "";
    if (field.kind === "multi") return `up to ${field.max_entries} values, comma-separated${more}`;
    return `${field.values_total} known values${more}`;
  }

  function buildForm(form) {
    const box = $("fields");
    box.replaceChildren();
    form.fields.forEach((field, i) => {
      const id = `field-${i}`;
      const wrap = el("div", "field");
      const label = el("label", null, field.name);
      label.htmlFor = id;
      const input = el("input");
      input.id = id;
      input.name = field.name;
      input.autocomplete = "off";
      const hint = el("span", "hint", hintOf(field));
      hint.id = `${id}-hint`;
      const flag = el("span", "flag");
      flag.id = `${id}-flag`;
      flag.hidden = true;
      input.setAttribute("aria-describedby", `${hint.id} ${flag.id}`);
      if (numeric(field)) {
        input.type = "number";
        input.step = "any";
      } else {
        input.type = "text";
        input.spellcheck = false;
        if (field.values.length) {
          const list = el("datalist");
          list.id = `${id}-values`;
          for (const value of field.values) {
            const option = el("option");
            option.value = value;
            list.append(option);
          }
          wrap.append(list);
          input.setAttribute("list", list.id);
        }
      }
      input.addEventListener("input", () => flagField(field.name, null));
      wrap.append(label, input, hint, flag);
      box.append(wrap);
      state.fields.set(field.name, { field, input, wrap, flag });
    });
  }

  function instanceFromForm() {
    const instance = {};
    for (const { field, input } of state.fields.values()) {
      if (numeric(field)) {
        if (input.validity.badInput) throw new Error(`${field.name}: not a number`);
        if (input.value !== "") instance[field.name] = Number(input.value);
      } else if (field.kind === "multi") {
        const values = input.value.split(",").map((v) => v.trim()).filter((v) => v !== "");
        if (values.length) instance[field.name] = values;
      } else if (input.value !== "") {
        instance[field.name] = input.value;
      }
    }
    return instance;
  }

  function fillForm(instance) {
    for (const { input } of state.fields.values()) input.value = "";
    for (const [name, value] of Object.entries(instance)) {
      const entry = state.fields.get(name);
      if (entry && value !== null && value !== undefined) entry.input.value = shown(value);
    }
    for (const name of state.fields.keys()) flagField(name, null);
  }

  function flagField(name, values) {
    const entry = state.fields.get(name);
    if (!entry) return;
    entry.wrap.classList.toggle("oov", values !== null);
    entry.flag.hidden = values === null;
    entry.flag.textContent = values === null ? "" : `not in the vocabulary: ${values.join(", ")}`;
  }

  // Examples are numbered: example n is drawn by a generator seeded with n (mulberry32), so
  // /ui?example=n shows the same instance of the same model on every machine.
  function seeded(seed) {
    let a = seed >>> 0;
    return () => {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = Math.imul(a ^ (a >>> 15), 1 | a);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }

  const pick = (values, random) => values[Math.floor(random() * values.length)];

  function gaussian(random) {
    return Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
  }

  function bucketValue(boundaries, random) {
    if (!boundaries.length) return 0;
    const k = Math.floor(random() * (boundaries.length + 1));
    if (k === 0) return boundaries[0] - 1;
    if (k === boundaries.length) return boundaries[k - 1] + 1;
    return (boundaries[k - 1] + boundaries[k]) / 2;
  }

  // Example n: an instance every value of which the model knows, the kind of row it was
  // trained on.
  function exampleInstance(n) {
    const random = seeded(n);
    const instance = {};
    for (const field of state.form.fields) {
      if (field.kind === "numeric") {
        instance[field.name] = Math.round((field.center + field.scale * gaussian(random)) * 100) / 100;
      } else if (field.kind === "bucketized") {
        instance[field.name] = bucketValue(field.boundaries, random);
      } else if (field.kind === "multi" && field.values.length) {
        const count = 1 + Math.floor(random() * Math.min(field.max_entries, 3, field.values.length));
        const chosen = new Set();
        while (chosen.size < count) chosen.add(pick(field.values, random));
        instance[field.name] = [...chosen];
      } else if (field.values.length) {
        instance[field.name] = pick(field.values, random);
      }
    }
    return instance;
  }

  const MAX_EXAMPLE = 2 ** 32 - 1;

  // The example number in the page's address (?example=n), or null; anything else is an error.
  function exampleInAddress() {
    const text = new URLSearchParams(window.location.search).get("example");
    if (text === null) return null;
    if (!/^[0-9]{1,10}$/.test(text) || Number(text) > MAX_EXAMPLE) {
      throw new Error(`example must be a whole number from 0 to ${MAX_EXAMPLE}, got "${text}"`);
    }
    return Number(text);
  }

  // Fills example n into the form and the JSON box, and names it in the address and beside
  // the button, so that what is on the screen can be shown again.
  function showExample(n) {
    state.example = n;
    const instance = exampleInstance(n);
    fillForm(instance);
    $("json").value = JSON.stringify(instance, null, 2);
    const address = new URL(window.location.href);
    address.searchParams.set("example", String(n));
    window.history.replaceState(null, "", address);
    const link = $("example-link");
    link.textContent = `example ${n}`;
    link.href = `ui?example=${n}`; // relative to the page, so it works under a path prefix
    $("example-line").hidden = false;
    return instance;
  }

  // Once the instance is edited it is no longer the example the address names.
  function forgetExample() {
    if ($("example-line").hidden) return;
    $("example-line").hidden = true;
    const address = new URL(window.location.href);
    address.searchParams.delete("example");
    window.history.replaceState(null, "", address);
  }

  // --- the result ----------------------------------------------------------------------

  async function explain(instance) {
    $("error").textContent = "";
    const body = await getJSON("predict", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ instances: [instance], explain: true }),
    });
    state.last = body.predictions[0];
    state.allPairs = false;
    render(state.last);
    const served = state.form.model;
    if (body.model.name !== served.name || body.model.version !== served.version) {
      $("warning").hidden = false;
      $("warning").textContent = `The server now serves ${body.model.name} version ${body.model.version}, ` +
        `not the version ${served.version} this form was built for: reload the page.`;
    }
  }

  function render(prediction) {
    $("result").hidden = false;
    renderScore(prediction);
    const warning = $("warning");
    warning.hidden = !prediction.warning;
    warning.textContent = prediction.warning || "";
    const oov = oovByField(prediction.oov);
    renderOOV(prediction.oov, oov);
    renderPairs(prediction.explanation, oov);
    renderSum(prediction, oov);
  }

  function oovByField(items) {
    const byField = new Map();
    for (const { field, value } of items) {
      if (!byField.has(field)) byField.set(field, []);
      byField.get(field).push(value);
    }
    return byField;
  }

  function scoreItem(name, value, label) {
    const item = el("div");
    item.dataset.name = name;
    const dd = el("dd", null, fixed(value));
    dd.dataset.value = String(value);
    item.append(el("dt", null, label), dd);
    return item;
  }

  function renderScore(prediction) {
    const label = state.form.label;
    const items = [scoreItem(label, prediction[label], label)];
    const scoreLabel = label === "probability" ? "score (logit)" : "score";
    items.push(scoreItem("score", prediction.score, scoreLabel));
    $("score").replaceChildren(...items);
  }

  function renderOOV(items, byField) {
    $("oov").hidden = items.length === 0;
    const list = $("oov-items");
    list.replaceChildren();
    for (const { field, value } of items) {
      const li = el("li", null, `${field} = `);
      li.append(el("span", "value", JSON.stringify(value)));
      list.append(li);
    }
    for (const name of state.fields.keys()) flagField(name, byField.get(name) || null);
  }

  // What the page shows for a field's value: the text the user gave when it was unknown
  // (the explanation names it "<oov>" or "<hash k>"), else the explanation's own name.
  function valueNode(field, value, oov) {
    const span = el("span", "value");
    const unknown = oov.get(field);
    span.textContent = unknown ? unknown.join(", ") : shown(value);
    if (unknown) span.append(el("span", "badge", "OOV"));
    return span;
  }

  function pairRow(fields, values, attention, contribution, scale, oov) {
    const row = el("div", "pair");
    row.setAttribute("role", "listitem");
    row.dataset.fields = fields.join("\u00d7");
    row.dataset.contribution = String(contribution);
    row.dataset.attention = String(attention);
    const label = el("span", "pair-label");
    label.append(el("span", "fields-of", `${fields[0]} \u00d7 ${fields[1]}`));
    const vals = el("span", "values-of");
    vals.append(valueNode(fields[0], values[0], oov), " \u00b7 ", valueNode(fields[1], values[1], oov));
    label.append(vals);

    const track = el("span", "track");
    track.setAttribute("aria-hidden", "true");
    const neg = el("span", "half neg");
    const pos = el("span", "half pos");
    const bar = el("span", `bar ${contribution < 0 ? "neg" : "pos"}`);
    bar.style.width = `${scale > 0 ? (100 * Math.abs(contribution)) / scale : 0}%`;
    (contribution < 0 ? neg : pos).append(bar);
    track.append(neg, pos);

    const value = el("span", "contribution", signed(contribution));
    const att = el("span", "attention");
    const meter = el("span", "meter");
    meter.setAttribute("aria-hidden", "true");
    const fill = el("span");
    fill.style.width = `${Math.max(0, Math.min(1, attention)) * 100}%`;
    meter.append(fill);
    att.append(meter, el("span", "sr-only", "attention "), el("span", "attention-value", fixed(attention, 3)));
    row.append(label, track, value, att);
    return row;
  }

  function renderPairs(explanation, oov) {
    const p = explanation.pairs;
    const order = p.contributions.map((_, i) => i);
    order.sort((a, b) => Math.abs(p.contributions[b]) - Math.abs(p.contributions[a]));
    const scale = Math.max(0, ...p.contributions.map(Math.abs));
    const count = state.allPairs ? order.length : Math.min(order.length, SHOWN_PAIRS);
    const rows = order.slice(0, count).map((i) =>
      pairRow(p.fields[i], p.values[i], p.attention[i], p.contributions[i], scale, oov));
    if (!order.length) rows.push(el("p", "note", "No pair: fewer than two fields hold a value."));
    $("pairs").replaceChildren(...rows);
    const rest = order.length - count;
    $("more-pairs-line").hidden = rest === 0;
    $("more-pairs").textContent = `Show all ${order.length} pairs (${rest} more)`;
  }

  function sumRow(part, name, value, contribution, className) {
    const tr = el("tr", className);
    tr.dataset.part = part;
    const first = el("td", part === "linear" ? "indent" : null, name);
    const second = el("td");
    if (value !== null) second.append(value);
    const third = el("td", "num", part === "score" || part === "probability" ? fixed(contribution) : signed(contribution));
    third.dataset.value = String(contribution);
    tr.append(first, second, third);
    return tr;
  }

  function renderSum(prediction, oov) {
    const e = prediction.explanation;
    const rows = [sumRow("bias", "bias", null, e.bias)];
    if (e.logit_shift !== 0) {
      rows.push(sumRow("logit-shift", "downsampling correction (ln of the negatives' keep rate)", null, e.logit_shift));
    }
    const linear = e.linear;
    let linearTotal = 0;
    linear.fields.forEach((field, i) => {
      linearTotal += linear.weights[i];
      rows.push(sumRow("linear", `linear: ${field}`, valueNode(field, linear.values[i], oov), linear.weights[i]));
    });
    rows.push(sumRow("linear-total", "linear terms", null, linearTotal, "subtotal"));
    const count = e.pairs.contributions.length + e.pairs_omitted;
    rows.push(sumRow("interaction", `pair interactions (${count} pairs)`, null, e.interaction, "subtotal"));
    rows.push(sumRow("score", "score", null, prediction.score, "total"));
    if (e.calibration !== null) {
      const map = e.calibration === "none" ? "sigmoid" : `${e.calibration} calibration`;
      rows.push(sumRow("probability", `probability (${map} of the score)`, null, prediction.probability, "total"));
    }
    const gap = prediction.score - (e.bias + e.logit_shift + linearTotal + e.interaction);
    if (Math.abs(gap) > 1e-4) rows.push(sumRow("gap", "unexplained (rounding in float32)", null, gap));
    $("sum-body").replaceChildren(...rows);
  }

  // --- the global importance heatmap ------------------------------------------------------

  const LOW = [247, 251, 255];
  const HIGH = [8, 48, 107];

  function colour(t) {
    const c = LOW.map((low, k) => Math.round(low + (HIGH[k] - low) * t));
    return `rgb(${c[0]}, ${c[1]}, ${c[2]})`;
  }

  const measureOf = () => document.querySelector('input[name="measure"]:checked').value;

  function describeCell(item) {
    return `${item.fields[0]} \u00d7 ${item.fields[1]}\nmean attention ${fixed(item.mean_attention)}` +
      `\nmean |contribution| ${fixed(item.mean_abs_contribution)}`;
  }

  function fieldNames() {
    if (state.form) return state.form.fields.map((f) => f.name);
    const names = [];
    for (const item of state.importance) for (const n of item.fields) if (!names.includes(n)) names.push(n);
    return names;
  }

  function drawHeatmap() {
    const table = $("heatmap");
    const items = state.importance;
    if (!items.length) {
      table.replaceChildren();
      $("importance-error").textContent = "This model's bundle records no global importance.";
      return;
    }
    const measure = measureOf();
    const names = fieldNames();
    const at = new Map(items.map((item) => [item.fields.join("\u0000"), item]));
    const max = Math.max(...items.map((item) => item[measure]));
    const withNumbers = names.length <= 12;
    const head = el("tr");
    head.append(el("td"));
    for (const name of names.slice(1)) head.append(Object.assign(el("th", null, name), { scope: "col" }));
    const rows = [el("thead"), el("tbody")];
    rows[0].append(head);
    let first = true;
    names.slice(0, -1).forEach((rowName, i) => {
      const tr = el("tr");
      tr.append(Object.assign(el("th", null, rowName), { scope: "row" }));
      names.slice(1).forEach((colName, j0) => {
        const j = j0 + 1;
        const item = j > i ? at.get(`${rowName}\u0000${colName}`) || at.get(`${colName}\u0000${rowName}`) : null;
        const td = el("td", item ? "pair-cell" : "empty");
        if (item) {
          const t = max > 0 ? item[measure] / max : 0;
          td.style.backgroundColor = colour(t);
          td.classList.toggle("dark", t > 0.5);
          td.tabIndex = first ? 0 : -1;
          first = false;
          td.dataset.row = String(i);
          td.dataset.col = String(j);
          td.dataset.fields = item.fields.join("\u00d7");
          td.dataset.value = String(item[measure]);
          td.setAttribute("aria-label", describeCell(item).replaceAll("\n", ", "));
          if (withNumbers) td.textContent = fixed(item[measure], 2);
          td.addEventListener("mouseenter", () => showTip(td, item));
          td.addEventListener("focus", () => showTip(td, item));
          td.addEventListener("mouseleave", hideTip);
          td.addEventListener("blur", hideTip);
        }
        tr.append(td);
      });
      rows[1].append(tr);
    });
    table.replaceChildren(...rows);
    $("legend-min").textContent = "0";
    $("legend-max").textContent = fixed(max, 3);
  }

  function showTip(td, item) {
    const tip = $("tooltip");
    tip.textContent = describeCell(item);
    tip.hidden = false;
    const wrap = tip.parentElement.getBoundingClientRect();
    const cell = td.getBoundingClientRect();
    tip.style.left = `${cell.right - wrap.left + tip.parentElement.scrollLeft + 6}px`;
    tip.style.top = `${cell.top - wrap.top + tip.parentElement.scrollTop}px`;
    $("cell-detail").textContent = describeCell(item).replaceAll("\n", " \u00b7 ");
  }

  function hideTip() {
    $("tooltip").hidden = true;
  }

  function moveInGrid(event) {
    const moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
    const cell = event.target.closest("td.pair-cell");
    if (!cell || !moves[event.key]) return;
    const [di, dj] = moves[event.key];
    const next = $("heatmap").querySelector(
      `td.pair-cell[data-row="${+cell.dataset.row + di}"][data-col="${+cell.dataset.col + dj}"]`);
    event.preventDefault();
    if (!next) return;
    cell.tabIndex = -1;
    next.tabIndex = 0;
    next.focus();
  }

  async function showImportance() {
    $("importance-error").textContent = "";
    try {
      state.importance = (await getJSON("explain")).importance; // fresh: a reload may change it
      drawHeatmap();
    } catch (error) {
      $("importance-error").textContent = error.message;
    }
  }

  // --- views and wiring ----------------------------------------------------------------

  function selectTab(tab) {
    for (const other of document.querySelectorAll('[role="tab"]')) {
      const selected = other === tab;
      other.setAttribute("aria-selected", String(selected));
      other.tabIndex = selected ? 0 : -1;
      $(other.getAttribute("aria-controls")).hidden = !selected;
    }
    if (tab.id === "tab-importance") showImportance();
  }

  function onTabKey(event) {
    const tabs = [...document.querySelectorAll('[role="tab"]')];
    const at = tabs.indexOf(event.target);
    const to = { ArrowRight: at + 1, ArrowLeft: at - 1, Home: 0, End: tabs.length - 1 }[event.key];
    if (to === undefined) return;
    event.preventDefault();
    const tab = tabs[(to + tabs.length) % tabs.length];
    tab.focus();
    selectTab(tab);
  }

  async function guarded(action) {
    try {
      await action();
    } catch (error) {
      $("error").textContent = error.message;
    }
  }

  function parseJSONBox() {
    let parsed;
    try {
      parsed = JSON.parse($("json").value);
    } catch (error) {
      throw new Error(`The JSON box does not hold valid JSON: ${error.message}`);
    }
    if (parsed && Array.isArray(parsed.instances)) parsed = parsed.instances[0];
    if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
      throw new Error('The JSON box must hold one instance, e.g. {"field": "value"}');
    }
    return parsed;
  }

  function wire() {
    $("instance-form").addEventListener("submit", (event) => {
      event.preventDefault();
      guarded(async () => {
        const instance = instanceFromForm();
        $("json").value = JSON.stringify(instance, null, 2);
        await explain(instance);
      });
    });
    $("explain-json").addEventListener("click", () => guarded(async () => {
      const instance = parseJSONBox();
      fillForm(instance);
      await explain(instance);
    }));
    $("example").addEventListener("click", () => showExample(state.example === null ? 1 : state.example + 1));
    $("instance-form").addEventListener("input", forgetExample);
    $("json").addEventListener("input", forgetExample);
    $("clear").addEventListener("click", () => {
      forgetExample();
      fillForm({});
      $("json").value = "";
    });
    $("more-pairs").addEventListener("click", () => {
      state.allPairs = true;
      renderPairs(state.last.explanation, oovByField(state.last.oov));
    });
    for (const tab of document.querySelectorAll('[role="tab"]')) {
      tab.addEventListener("click", () => selectTab(tab));
      tab.addEventListener("keydown", onTabKey);
    }
    for (const radio of document.querySelectorAll('input[name="measure"]')) {
      radio.addEventListener("change", () => state.importance && drawHeatmap());
    }
    $("heatmap").addEventListener("keydown", moveInGrid);
  }

  async function start() {
    wire();
    try {
      state.form = await getJSON("ui/form");
    } catch (error) {
      $("model-line").textContent = `The model is not available: ${error.message}`;
      return;
    }
    const f = state.form;
    $("model-line").textContent =
      `${f.model.name} version ${f.model.version} \u00b7 ${f.kind.toUpperCase()} \u00b7 ${f.task} \u00b7 ${f.fields.length} fields`;
    buildForm(f);
    await guarded(async () => {
      const n = exampleInAddress();
      if (n !== null) await explain(showExample(n));
    });
    document.body.dataset.ready = "true";
  }

  start();
})();
