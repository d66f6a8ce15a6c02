// The demo page: a form built from the model card (GET /model), posting one record to
// /predict and showing the answer, or the server's own error lines as they are. Text only
// ever goes in through textContent: nothing from the card or the server is read as HTML.
"use strict";

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
    else if (feature.type === "category") record[feature.name] = raw;
    else record[feature.name] = Number(raw);
  }
  return record;
}

function showAnswer(card, prediction) {
  $("problems").hidden = true;
  const bars = $("bars");
  bars.replaceChildren();
  if (card.task === "regression") {
    $("headline").textContent = `${card.target.name}: ${prediction.value}`;
  } else {
    $("headline").textContent = `${card.target.name}: ${prediction.label}`;
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
  $("answer").hidden = false;
}

function showProblems(lines) {
  $("answer").hidden = true;
  const list = $("problem-list");
  list.replaceChildren(...lines.map((line) => element("li", line)));
  $("problems").hidden = false;
}

async function predict(card) {
  const response = await fetch("/predict", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ records: [readRecord(card)] }),
  });
  const body = await response.json().catch(() => ({ detail: [response.statusText] }));
  if (response.ok) showAnswer(card, body.predictions[0]);
  else showProblems(Array.isArray(body.detail) ? body.detail : [String(body.detail)]);
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
  $("form").addEventListener("submit", (event) => {
    event.preventDefault();
    predict(card).catch((error) => showProblems([String(error)]));
  });
  $("form").hidden = false;
}

start();
