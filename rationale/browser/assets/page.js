"use strict";
// The rationale browser: one page over the records embedded above. Every text from the
// records goes into the page as text (textContent), never as markup.

const DATA = JSON.parse(document.getElementById("page-data").textContent);
const SOURCES = ["seed", "decompose", "teacher", "rationalizer"];
const PAGE_SIZES = [100, 500, 0]; // 0: all
const KEYWORDS = new Set(("select from where group by order having limit offset join left right " +
  "inner outer cross full natural on using as and or not in is null like glob between case when " +
  "then else end distinct all union intersect except with recursive exists cast asc desc count " +
  "sum avg min max over partition filter collate escape true false iif coalesce ifnull " +
  "substr substring strftime instr length round abs upper lower replace trim total").split(" "));

function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function fmt(n) { return Number(n).toLocaleString("en-US"); }
function pct(n, total) { return total ? (100 * n / total).toFixed(1) + "%" : "0%"; }

// --- SQL and explanation text ------------------------------------------------------

const SQL_TOKEN = /('(?:[^']|'')*'?)|("(?:[^"]|"")*"?|`[^`]*`?|\[[^\]]*\]?)|(--[^\n]*|\/\*[\s\S]*?(?:\*\/|$))|(\b\d+(?:\.\d+)?(?:e[+-]?\d+)?\b)|([A-Za-z_][A-Za-z0-9_$]*)|([\s\S])/gi;

function sqlBlock(sql) {
  const pre = h("pre", { class: "sql" });
  let match;
  SQL_TOKEN.lastIndex = 0;
  let plain = "";
  const flush = () => { if (plain) { pre.append(document.createTextNode(plain)); plain = ""; } };
  while ((match = SQL_TOKEN.exec(sql)) !== null) {
    const [text, str, ident, comment, num, word] = match;
    let cls = null;
    if (str !== undefined) cls = "str";
    else if (ident !== undefined) cls = "ident";
    else if (comment !== undefined) cls = "com";
    else if (num !== undefined) cls = "num";
    else if (word !== undefined && KEYWORDS.has(word.toLowerCase())) cls = "kw";
    if (cls) { flush(); pre.append(h("span", { class: cls, text })); } else plain += text;
  }
  flush();
  return pre;
}

function prose(text) {
  // `names` in an explanation are shown as code; everything else stays text.
  const out = h("div", { class: "explanation" });
  text.split(/(`[^`\n]+`)/).forEach((part) => {
    if (part.length > 2 && part.startsWith("`") && part.endsWith("`")) out.append(h("code", { text: part.slice(1, -1) }));
    else if (part) out.append(document.createTextNode(part));
  });
  return out;
}

function resultTable(result) {
  if (!result) return h("div", { class: "result muted", text: "not executed when the page was built" });
  const box = h("div", { class: "result" });
  if (result.error) { box.append(h("div", { class: "error", text: "error: " + result.error })); return box; }
  const count = result.more ? `at least ${fmt(result.count)} rows` : `${fmt(result.count)} row${result.count === 1 ? "" : "s"}`;
  const shown = result.rows.length < result.count ? `, the first ${result.rows.length} shown` : "";
  box.append(h("div", { class: "count", text: count + shown }));
  if (result.columns.length && result.rows.length) {
    box.append(h("table", {},
      h("thead", {}, h("tr", {}, result.columns.map((c) => h("th", { text: c })))),
      h("tbody", {}, result.rows.map((row) => h("tr", {}, row.map((v) => h("td", { text: v })))))));
  }
  return box;
}

function rawText(text, badLine) {
  const pre = h("pre", { class: "raw" });
  text.split("\n").forEach((line, i) => pre.append(h("span", { class: "line" + (i + 1 === badLine ? " bad" : ""), text: line || " " })));
  return pre;
}

function kv(entries) {
  return h("dl", { class: "kv" }, entries.filter(([, v]) => v !== null && v !== undefined && v !== "")
    .map(([k, v]) => [h("dt", { text: k }), h("dd", { text: typeof v === "object" ? JSON.stringify(v) : String(v) })]));
}

// --- a list with filters, shared by both views ---------------------------------------

class FilteredList {
  constructor(options) {
    Object.assign(this, options); // items, filters [{id, label, values(item) -> [..]}], row(item), detail(item), haystack(item)
    this.matching = this.items;
    this.page = 0;
    this.pageSize = PAGE_SIZES[0];
    this.selected = null;
    this.hay = this.items.map((item) => this.haystack(item).toLowerCase());
  }

  options(filter) {
    const counts = new Map();
    this.items.forEach((item) => filter.values(item).forEach((v) => counts.set(v, (counts.get(v) || 0) + 1)));
    const values = [...counts.keys()].sort((a, b) => (filter.order ? filter.order(a) - filter.order(b) : 0) || String(a).localeCompare(String(b)));
    return h("select", { id: "f-" + filter.id, "aria-label": filter.label, onchange: () => this.apply() },
      h("option", { value: "", text: `${filter.label}: all` }),
      values.map((v) => h("option", { value: v, text: `${v} (${fmt(counts.get(v))})` })));
  }

  render(container) {
    this.search = h("input", { type: "search", id: "f-search", placeholder: "Search question, SQL, explanation…", oninput: () => { clearTimeout(this.timer); this.timer = setTimeout(() => this.apply(), 120); } });
    this.selects = this.filters.map((f) => this.options(f));
    this.sizeSelect = h("select", { id: "f-page-size", "aria-label": "rows per page", onchange: () => { this.pageSize = Number(this.sizeSelect.value); this.page = 0; this.draw(); } },
      PAGE_SIZES.map((n) => h("option", { value: n, text: n ? `${n} per page` : "all on one page" })));
    this.countLine = h("span", { id: "count", class: "muted" });
    container.append(h("div", { class: "panel filters" }, this.search, this.selects, this.sizeSelect,
      h("button", { id: "f-clear", onclick: () => this.clear() }, "Clear"), this.countLine));
    this.body = h("tbody", { id: "rows" });
    this.pager = h("div", { class: "pager" });
    this.detailBox = h("section", { class: "panel detail", id: "detail" }, h("div", { class: "empty", text: "Choose a question on the left." }));
    container.append(h("div", { class: "split" },
      h("section", { class: "panel list" }, h("table", {}, this.body), this.pager), this.detailBox));
    this.apply();
  }

  set(filterId, value) {
    const select = this.selects[this.filters.findIndex((f) => f.id === filterId)];
    select.value = value;
    this.apply();
  }

  clear() {
    this.search.value = "";
    this.selects.forEach((s) => { s.value = ""; });
    this.apply();
  }

  apply() {
    const words = this.search.value.toLowerCase().split(/\s+/).filter(Boolean);
    const chosen = this.filters.map((f, i) => [f, this.selects[i].value]).filter(([, v]) => v !== "");
    this.matching = this.items.filter((item, i) =>
      chosen.every(([f, v]) => f.values(item).map(String).includes(v)) &&
      words.every((w) => this.hay[i].includes(w)));
    this.page = 0;
    this.draw();
  }

  draw() {
    const size = this.pageSize || this.matching.length || 1;
    const pages = Math.max(1, Math.ceil(this.matching.length / size));
    this.page = Math.min(this.page, pages - 1);
    const start = this.page * size;
    const shown = this.matching.slice(start, start + size);
    this.body.replaceChildren(...shown.map((item) => {
      const tr = this.row(item);
      tr.classList.add("row");
      tr.dataset.key = item.key;
      if (this.selected === item) tr.classList.add("selected");
      tr.addEventListener("click", () => this.show(item));
      return tr;
    }));
    const total = this.items.length;
    this.countLine.textContent = this.matching.length === total
      ? `${fmt(total)} questions` : `${fmt(this.matching.length)} of ${fmt(total)} questions`;
    this.pager.replaceChildren(
      h("button", { id: "prev", disabled: this.page === 0, onclick: () => { this.page--; this.draw(); } }, "‹ previous"),
      h("span", { id: "range", text: this.matching.length ? `${fmt(start + 1)}–${fmt(start + shown.length)} of ${fmt(this.matching.length)}` : "nothing matches" }),
      h("button", { id: "next", disabled: this.page >= pages - 1, onclick: () => { this.page++; this.draw(); } }, "next ›"));
  }

  show(item) {
    this.selected = item;
    this.body.querySelectorAll("tr.row").forEach((tr) => tr.classList.toggle("selected", tr.dataset.key === item.key));
    this.detailBox.replaceChildren(...this.detail(item));
    this.detailBox.dataset.key = item.key;
    if (location.hash.slice(1) !== this.route(item)) history.replaceState(null, "", "#" + this.route(item));
  }
}

// --- the rationales view -------------------------------------------------------------

function outcomeGroup(q) {
  if (q.source) return q.source;
  if (q.outcome.startsWith("quarantined")) return "quarantined";
  if (q.outcome.startsWith("every sample invalid")) return "every sample invalid";
  return q.outcome;
}
const GROUP_COLOR = { seed: "var(--seed)", decompose: "var(--decompose)", teacher: "var(--teacher)",
  rationalizer: "var(--rationalizer)", quarantined: "var(--quarantine)", "every sample invalid": "var(--invalid)" };
const GROUP_ORDER = [...SOURCES, "every sample invalid", "quarantined", "no database", "not attempted"];
function groupOrder(g) { const i = GROUP_ORDER.indexOf(g); return i < 0 ? GROUP_ORDER.length : i; }

function stackedBar(counts, total, small) {
  return h("div", { class: "bar" + (small ? " small" : ""), role: "img", "aria-label": [...counts].map(([g, n]) => `${g} ${n}`).join(", ") },
    [...counts].sort((a, b) => groupOrder(a[0]) - groupOrder(b[0])).map(([g, n]) =>
      h("span", { style: `width:${(100 * n / total).toFixed(3)}%;background:${GROUP_COLOR[g] || "var(--none)"}`, title: `${g}: ${fmt(n)} (${pct(n, total)})` })));
}

function coveragePanel(list) {
  const questions = DATA.questions;
  const total = questions.length;
  const counts = new Map();
  questions.forEach((q) => { const g = outcomeGroup(q); counts.set(g, (counts.get(g) || 0) + 1); });
  const covered = questions.filter((q) => q.source).length;
  const byDb = new Map();
  questions.forEach((q) => {
    if (!byDb.has(q.db)) byDb.set(q.db, new Map());
    const m = byDb.get(q.db); const g = outcomeGroup(q); m.set(g, (m.get(g) || 0) + 1);
  });
  const dbRows = [...byDb].map(([db, m]) => {
    const n = [...m.values()].reduce((a, b) => a + b, 0);
    const c = SOURCES.reduce((a, s) => a + (m.get(s) || 0), 0);
    return { db, n, c, m };
  }).sort((a, b) => a.c / a.n - b.c / b.n || b.n - a.n);
  const causes = DATA.coverage ? Object.entries(DATA.coverage.not_covered) : [];
  return h("section", { class: "panel", id: "coverage" },
    h("h2", {}, `Coverage of ${DATA.split || "the records"}: ${fmt(covered)} of ${fmt(total)} questions (${pct(covered, total)})`),
    stackedBar(counts, total, false),
    h("div", { class: "legend" }, [...counts].sort((a, b) => groupOrder(a[0]) - groupOrder(b[0])).map(([g, n]) =>
      h("button", { "data-group": g, title: "show only these questions", onclick: () => list.set("outcome", g) },
        h("span", { class: "swatch", style: `background:${GROUP_COLOR[g] || "var(--none)"}` }), `${g} ${fmt(n)} (${pct(n, total)})`))),
    causes.length ? h("ul", { class: "notes" }, causes.map(([cause, n]) => h("li", { text: `not covered, ${cause}: ${fmt(n)}` }))) : null,
    h("details", { class: "by-db" }, h("summary", {}, `By database (${byDb.size}), least covered first`),
      h("table", {}, h("thead", {}, h("tr", {}, ["database", "questions", "covered", ""].map((t) => h("th", { text: t })))),
        h("tbody", {}, dbRows.map((r) => h("tr", {},
          h("td", {}, h("a", { href: "#", onclick: (e) => { e.preventDefault(); list.set("db", r.db); } }, r.db)),
          h("td", { text: fmt(r.n) }), h("td", { text: pct(r.c, r.n) }), h("td", {}, stackedBar(r.m, r.n, true))))))));
}

function sourceBadge(q) {
  return q.source ? h("span", { class: "badge " + q.source, text: q.source })
    : h("span", { class: "badge uncovered", text: q.outcome.replace("every sample invalid", "invalid") });
}

function questionDetail(q) {
  const parts = [
    h("div", {}, sourceBadge(q), " ", h("span", { class: "muted", text: `${q.key} · ${q.db}${q.difficulty ? " · " + q.difficulty : ""}` })),
    h("div", { class: "question", text: q.q }),
    q.evidence ? h("div", { class: "evidence", text: "Evidence: " + q.evidence }) : null,
    h("h3", {}, "Gold SQL"), sqlBlock(q.gold_sql || "(not in the records)"),
    q.gold_sql ? resultTable(q.gold) : null,
  ];
  const a = q.accepted;
  if (a) {
    parts.push(h("h3", {}, `Rationale: ${a.steps.length - 1} step${a.steps.length === 2 ? "" : "s"} and the final query `, h("span", { class: "muted", text: `(${a.origin})` })));
    a.steps.forEach((s, i) => parts.push(h("article", { class: "step" + (s.name === "final" ? " final" : ""), "data-step": s.name },
      h("header", {}, h("span", { class: "num-badge", text: s.name === "final" ? "✓" : String(i + 1) }), h("span", { class: "step-title", text: s.title || s.name })),
      s.explanation ? prose(s.explanation) : null,
      s.flags.map((f) => h("div", { class: "flag", text: "explanation check: " + f })),
      sqlBlock(s.sql), resultTable(s.result))));
    if (a.checks.length) {
      parts.push(h("h3", {}, "Validation"), h("div", { class: "checks", id: "checks" }, a.checks.map((c) =>
        h("span", { class: "badge " + c.status, title: c.detail || c.status, "data-check": c.name, text: `${c.name}: ${c.status}` }))));
      a.checks.filter((c) => c.detail && c.status !== "passed").forEach((c) => parts.push(h("div", { class: "check-detail", text: `${c.name}${c.step ? " (" + c.step + ")" : ""}: ${c.detail}` })));
    }
    if (Object.keys(a.provenance).length) {
      const p = a.provenance;
      parts.push(h("h3", {}, "Provenance"), kv([["model", p.model], ["backend", p.backend], ["mode", p.mode],
        ["iteration", p.iteration], ["sample", p.sample_index], ["valid samples", `${p.valid_samples} of ${p.samples}`],
        ["acceptance", p.acceptance_rule], ["retrieval", p.retrieval], ["few-shot examples", (p.shots || []).join(", ")],
        ["template", `${p.template} (${String(p.template_hash || "").slice(0, 12)})`], ["sampling", p.sampling]]));
    }
  } else {
    parts.push(h("h3", {}, "No accepted rationale"), h("div", { class: "muted", text: q.outcome }));
  }
  if (q.attempts.length) {
    parts.push(h("h3", {}, `Attempts (${q.attempts.length})`));
    q.attempts.forEach((t) => parts.push(h("div", { class: "attempt" },
      h("span", { class: "badge " + (t.accepted ? "passed" : t.valid ? "skipped" : "failed"), text: t.accepted ? "accepted" : t.valid ? "valid" : "invalid" }),
      " ", h("span", { class: "muted", text: `${t.stage} · iteration ${t.iteration} · sample ${t.sample}${t.model ? " · " + t.model : ""}` }),
      t.check ? h("div", { class: "problem", text: `${t.check}${t.line ? " (line " + t.line + ")" : ""}: ${t.problem}` }) : null,
      t.text ? h("details", {}, h("summary", {}, "the text the model wrote"), rawText(t.text, t.line)) : null)));
  }
  return parts;
}

function rationalesView(container) {
  const qs = DATA.questions;
  const list = new FilteredList({
    items: qs,
    filters: [
      { id: "db", label: "database", values: (q) => [q.db] },
      { id: "difficulty", label: "difficulty", values: (q) => (q.difficulty ? [q.difficulty] : []) },
      { id: "source", label: "source", values: (q) => [q.source || "not covered"] },
      { id: "outcome", label: "outcome", values: (q) => [outcomeGroup(q)], order: groupOrder },
      { id: "check", label: "failed check", values: (q) => q.checks_failed },
    ],
    haystack: (q) => [q.key, q.db, q.q, q.evidence, q.gold_sql, ...(q.accepted ? q.accepted.steps.flatMap((s) => [s.title, s.explanation, s.sql]) : [])].join("\n"),
    row: (q) => h("tr", {}, h("td", { class: "id", text: q.qid }),
      h("td", {}, h("div", { class: "qtext", text: q.q }), h("div", { class: "muted", text: q.db })), h("td", {}, sourceBadge(q))),
    detail: questionDetail,
    route: (q) => "q=" + q.key,
  });
  container.append(coveragePanel(list));
  list.render(container);
  return list;
}

// --- the predictions view ------------------------------------------------------------

function exBadge(ex) {
  if (ex === null || ex === undefined) return h("span", { class: "badge skipped", text: "not scored" });
  return h("span", { class: "badge " + (ex ? "right" : "wrong"), text: ex ? "EX 1" : "EX 0" });
}

function predictionDetail(p, system) {
  const parts = [
    h("div", { class: "muted", text: `${p.key} · ${p.db}${p.difficulty ? " · " + p.difficulty : ""} · ${system.name}` }),
    h("div", { class: "question", text: p.q }),
    p.evidence ? h("div", { class: "evidence", text: "Evidence: " + p.evidence }) : null,
    h("h3", {}, "Gold SQL"), sqlBlock(p.gold_sql), resultTable(p.gold),
    h("h3", {}, "Greedy answer ", exBadge(p.ex_greedy)), sqlBlock(p.greedy_sql || "(no SQL in the answer)"),
    p.first_failure ? h("div", { class: "flag", id: "first-failure", text: "the reasoning breaks at " + p.first_failure }) : null,
    h("h3", {}, "Voted answer ", exBadge(p.ex_voted)), sqlBlock(p.voted_sql || "(no SQL)"),
  ];
  if (p.candidates.length > 1 || (p.candidates[0] && p.candidates[0].text)) {
    parts.push(h("h3", {}, `Candidates (${p.candidates.length})`), h("table", { class: "candidates" },
      h("thead", {}, h("tr", {}, ["#", "votes", "rows", "SQL or error"].map((t) => h("th", { text: t })))),
      h("tbody", {}, p.candidates.map((c) => h("tr", { "data-candidate": c.index },
        h("td", { text: c.index === 0 ? "greedy" : c.index }), h("td", { text: c.votes }),
        h("td", { text: c.rows === null ? "" : fmt(c.rows) }),
        h("td", { class: "sqlcell", text: (c.error ? "error: " + c.error + "\n" : "") + (c.sql || "") + (c.cut ? "\n(cut at max_tokens)" : "") }))))));
    const greedy = p.candidates[0];
    if (greedy && greedy.text) parts.push(h("details", {}, h("summary", {}, "the greedy answer as the model wrote it"), rawText(greedy.text, null)));
  }
  return parts;
}

function predictionsView(container, system) {
  const right = (ex) => (ex === null || ex === undefined ? "not scored" : ex ? "right" : "wrong");
  const scored = system.questions.filter((p) => p.ex_voted !== null && p.ex_voted !== undefined);
  const exOf = (key) => scored.length ? pct(scored.filter((p) => p[key]).length, scored.length) : "not scored";
  container.append(h("section", { class: "panel", id: "system-summary" },
    h("h2", {}, `${system.name}: ${fmt(system.questions.length)} questions of ${system.split}`),
    kv([["folder", system.folder], ["EX greedy", exOf("ex_greedy")], ["EX voted", exOf("ex_voted")],
      ["CoT answers whose steps break", fmt(system.questions.filter((p) => p.first_failure).length)]])));
  const list = new FilteredList({
    items: system.questions,
    filters: [
      { id: "db", label: "database", values: (p) => [p.db] },
      { id: "difficulty", label: "difficulty", values: (p) => (p.difficulty ? [p.difficulty] : []) },
      { id: "greedy", label: "greedy", values: (p) => [right(p.ex_greedy)] },
      { id: "voted", label: "voted", values: (p) => [right(p.ex_voted)] },
      { id: "steps", label: "CoT steps", values: (p) => [p.first_failure ? "a step fails" : "no failing step"] },
    ],
    haystack: (p) => [p.key, p.db, p.q, p.evidence, p.gold_sql, p.greedy_sql, p.voted_sql].join("\n"),
    row: (p) => h("tr", {}, h("td", { class: "id", text: p.qid }),
      h("td", {}, h("div", { class: "qtext", text: p.q }), h("div", { class: "muted", text: p.db })),
      h("td", {}, exBadge(p.ex_voted))),
    detail: (p) => predictionDetail(p, system),
    route: (p) => `s=${system.name}&q=${p.key}`,
  });
  list.render(container);
  return list;
}

// --- tabs and routes -----------------------------------------------------------------

const views = [];
if (DATA.questions.length || !DATA.systems.length) views.push({ id: "rationales", label: `Rationales (${fmt(DATA.questions.length)})`, build: rationalesView });
DATA.systems.forEach((s) => views.push({ id: "s-" + s.name, label: `Predictions: ${s.name} (${fmt(s.questions.length)})`, build: (c) => predictionsView(c, s), system: s }));

function parseRoute() {
  const route = new URLSearchParams(location.hash.slice(1));
  return { system: route.get("s"), key: route.get("q") };
}

function openView(view, key) {
  document.querySelectorAll("#tabs button").forEach((b) => b.classList.toggle("active", b.dataset.view === view.id));
  const main = document.getElementById("main");
  if (!view.container) {
    view.container = h("div", { class: "view", "data-view": view.id });
    view.list = view.build(view.container);
  }
  main.replaceChildren(view.container);
  window.viewer.current = view.list;
  if (key) {
    const item = view.list.items.find((i) => i.key === key);
    if (item) view.list.show(item);
  }
}

window.viewer = { views, current: null, ready: false };
document.getElementById("title").textContent = DATA.title;
document.title = DATA.title;
document.getElementById("meta").textContent = `${DATA.source} · built ${DATA.built}` + (DATA.notes.length ? " · " + DATA.notes.join(" · ") : "");
document.getElementById("tabs").append(...views.map((v) => h("button", { role: "tab", "data-view": v.id, onclick: () => openView(v, null) }, v.label)));
const start = parseRoute();
openView(views.find((v) => v.system && v.system.name === start.system) || views[0], start.key);
window.viewer.ready = true;
