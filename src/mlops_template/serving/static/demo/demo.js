// The demo page: a form built from the model card (GET /model), posting one record to
// /predict and showing the answer, or the server's own error lines as they are. When the
// server shares its model file (GET /model.onnx), the page also scores the record itself with
// onnxruntime-web (vendored under /static/onnxruntime-web/) and shows both answers side by
// side. Text only ever goes in through textContent: nothing from the card or the server is
// read as HTML.
"use strict";

const ORT = "/static/onnxruntime-web/";

const $ = (id) => document.getElementById(id);

function element(tag, text, attributes = {}) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  return node;
}

function fieldFor(feature, example) {
  const id = "feature-" + feature.name;
  const label = element("label", feature.name, { for: id });
  const hints = [];
  if (feature.description && feature.description !== feature.name) hints.push(feature.description);
  if (feature.min !== null || feature.max !== null) {
    hints.push(`${feature.min ?? "−∞"} to ${feature.max ?? "∞"}`);
  }
  if (feature.nullable) hints.push("may be missing");
  if (hints.length) label.append(element("small", hints.join(" · ")));
  let input;
  if (feature.type === "category") {
    input = element("select", undefined, { id, name: feature.name });
    if (feature.nullable) input.append(element("option", "(missing)", { value: "" }));
    for (const category of feature.categories) {
      input.append(element("option", String(category), { value: String(category) }));
    }
  } else if (feature.type === "text") {
    input = element("textarea", undefined, { id, name: feature.name, rows: "3" });
  } else if (feature.type === "date" || feature.type === "datetime") {
    // ISO 8601 text, as the API takes it: a date picker would drop a time's zone.
    const hint = feature.type === "date" ? "2024-05-31" : "2024-05-31T14:30:00Z";
    input = element("input", undefined, {
      id, name: feature.name, type: "text", placeholder: hint,
    });
  } else {
    input = element("input", undefined, {
      id, name: feature.name, type: "number", step: feature.type === "integer" ? "1" : "any",
    });
  }
  const value = example[feature.name];
  input.value = value === null || value === undefined ? "" : String(value);
  return [label, input];
}

function readRecord(card) {
  const record = {};
  for (const feature of card.features) {
    const value = $("feature-" + feature.name).value;
    const raw = value.trim();
    if (raw === "") record[feature.name] = null;
    else if (feature.type === "text") record[feature.name] = value;
    else if (["category", "date", "datetime"].includes(feature.type)) record[feature.name] = raw;
    else record[feature.name] = Number(raw);
  }
  return record;
}

function showPrediction(card, prediction, headline, bars) {
  bars.replaceChildren();
  if (card.task === "regression") {
    headline.textContent = `${card.target.name}: ${prediction.value}`;
  } else {
    headline.textContent = `${card.target.name}: ${prediction.label}`;
    for (const [name, probability] of Object.entries(prediction.probabilities)) {
      const row = element("div", undefined, { class: "bar", "data-class": name });
      if (name === prediction.label) row.classList.add("best");
      const track = element("div", undefined, { class: "track" });
      const fill = element("div", undefined, { class: "fill" });
      fill.style.width = `${Math.round(probability * 1000) / 10}%`;
      track.append(fill);
      row.append(element("span", name), track, element("span", probability.toFixed(3)));
      bars.append(row);
    }
  }
}

// How far apart two answers are: the largest difference in probability (or value).
function difference(card, one, other) {
  if (card.task === "regression") return Math.abs(one.value - other.value);
  return Math.max(...card.classes.map((name) =>
    Math.abs(one.probabilities[name] - other.probabilities[name])));
}

function showAnswer(card, prediction, inPage) {
  $("problems").hidden = true;
  showPrediction(card, prediction, $("headline"), $("bars"));
  $("page-answer").hidden = inPage === null;
  $("agreement").textContent = "";
  if (inPage !== null) {
    showPrediction(card, inPage, $("page-headline"), $("page-bars"));
    const same = card.task === "regression" || inPage.label === prediction.label;
    $("agreement").textContent = (same ? "The two agree" : "The two disagree") +
      ` (largest difference ${difference(card, prediction, inPage).toExponential(1)}).`;
  }
  $("answer").hidden = false;
}

// The server's error lines, from its JSON body (or the status text when there is none).
function detailLines(body, fallback) {
  return Array.isArray(body.detail) ? body.detail : [String(body.detail ?? fallback)];
}

// The model in this page: the served ONNX file in onnxruntime-web's WebAssembly backend.
async function loadPageModel() {
  const response = await fetch("/model.onnx");
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new Error(detailLines(body, response.statusText).join("; "));
  }
  if (typeof WebAssembly !== "object") throw new Error("this browser has no WebAssembly");
  const ort = await import(ORT + "ort.wasm.min.mjs");
  ort.env.wasm.wasmPaths = ORT;
  ort.env.wasm.numThreads = 1; // no cross-origin isolation needed
  const bytes = new Uint8Array(await response.arrayBuffer());
  return { ort, session: await ort.InferenceSession.create(bytes) };
}

// A date or time as the model takes it: days since 1970-01-01 in UTC (no zone means UTC).
// Only for records the server has accepted: it alone decides what a valid date is.
function days(text) {
  const iso = text.replace(" ", "T");
  const zoned = /(Z|[+-]\d\d:?\d\d)$/.test(iso) ? iso : iso + "Z";
  return Date.parse(iso.length === 10 ? iso + "T00:00:00Z" : zoned) / 86400000;
}

// Score records (objects keyed by feature) as the server does: one [n, 1] tensor per feature,
// float32 numbers (dates as days) with NaN for missing, strings with "" for missing.
async function scoreInPage(card, model, records) {
  const { ort, session } = model;
  const feeds = {};
  for (const feature of card.features) {
    const dated = feature.type === "date" || feature.type === "datetime";
    const values = records.map((record) => {
      const value = record[feature.name] ?? null;
      return dated && value !== null ? days(value) : value;
    });
    const shape = [records.length, 1];
    feeds[card.inputs[feature.name]] = feature.type === "category" || feature.type === "text"
      ? new ort.Tensor("string", values.map((v) => (v === null ? "" : String(v))), shape)
      : new ort.Tensor("float32", Float32Array.from(values, (v) => (v === null ? NaN : v)), shape);
  }
  const outputs = await session.run(feeds);
  const [first, second] = session.outputNames.map((name) => outputs[name].data);
  if (card.task === "regression") return Array.from(first, (value) => ({ value }));
  const width = card.classes.length;
  return records.map((_, row) => ({
    label: String(first[row]),
    probabilities: Object.fromEntries(card.classes.map((name, k) =>
      [name, second[row * width + k]])),
  }));
}

function showProblems(lines) {
  $("answer").hidden = true;
  const list = $("problem-list");
  list.replaceChildren(...lines.map((line) => element("li", line)));
  $("problems").hidden = false;
}

let latest = 0; // the newest submission: an older one's late answer is dropped

async function predict(card, pageModel) {
  const turn = ++latest;
  const record = readRecord(card);
  const response = await fetch("/predict", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ records: [record] }),
  });
  const body = await response.json().catch(() => ({}));
  if (turn !== latest) return;
  if (!response.ok) {
    showProblems(detailLines(body, response.statusText));
    return;
  }
  showAnswer(card, body.predictions[0], null);
  // The page scores only what the server accepted (the server's checks are the contract),
  // once its own copy of the model is loaded: the server's answer never waits for it.
  const model = await pageModel.catch(() => null);
  if (model === null || turn !== latest) return;
  const inPage = (await scoreInPage(card, model, [record]))[0];
  if (turn === latest) showAnswer(card, body.predictions[0], inPage);
}

async function start() {
  const response = await fetch("/model");
  if (!response.ok) {
    $("about").textContent = `The model is not ready (${response.status}); reload in a moment.`;
    return;
  }
  const card = await response.json();
  document.title = `${card.name}: demo`;
  $("title").textContent = `${card.name}: ${card.task}`;
  $("about").textContent =
    `Version ${card.version}, ${card.estimator}. Edit the example and predict.`;
  for (const feature of card.features) $("fields").append(...fieldFor(feature, card.example || {}));
  $("page-status").textContent = "Loading the model into this page…";
  const pageModel = loadPageModel();
  pageModel.then(
    () => { $("page-status").textContent = "This page also scores with the same ONNX file, in WebAssembly."; },
    (error) => { $("page-status").textContent = `This page does not score by itself: ${error.message || error}`; },
  );
  // For tests and the curious: score many records in the page, e.g. a whole test split.
  window.demo = { scoreInPage: async (records) => scoreInPage(card, await pageModel, records) };
  $("form").addEventListener("submit", (event) => {
    event.preventDefault();
    predict(card, pageModel).catch((error) => showProblems([String(error)]));
  });
  $("form").hidden = false;
}

start();
