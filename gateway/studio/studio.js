// IDLock Studio: one page over the REST API (same origin). No framework, no build step: DOM built with h(),
// never from HTML strings, so nothing the API returns is ever parsed as markup.
"use strict";

const TOKEN_KEY = "idlock.token";
const STEPS = ["context", "render", "score", "regenerate", "refine", "state", "record"];
const SHEET_LISTS = ["distinctive_marks", "semantic_tags", "must_keep_traits"];
const MAX_PHOTOS = 5;

// ---- small helpers -----------------------------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

let uid = 0;
function field(label, control, hint) {
  const id = control.id || `f${++uid}`;
  control.id = id;
  const hintEl = hint ? h("small", { id: `${id}-hint`, class: "hint" }, hint) : null;
  if (hintEl) control.setAttribute("aria-describedby", hintEl.id);
  return h("div", { class: "field" }, h("label", { for: id }, label), control, hintEl);
}

function splitList(text) {
  return text.split(/[\n,;]/).map((s) => s.trim()).filter(Boolean);
}

function notice(message, kind = "error") {
  const el = document.getElementById("notice");
  el.textContent = message;
  el.className = `notice ${kind}`;
  el.hidden = !message;
  if (message && kind === "error") el.scrollIntoView({ block: "nearest" });
}

function pct(x) {
  return `${Math.round(x * 100)}%`;
}

// ---- the API -----------------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

async function errorOf(res) {
  let message = `The server answered ${res.status} ${res.statusText}.`;
  try {
    const body = await res.json();
    if (body && body.error && body.error.message) message = body.error.message;
  } catch (_) {
    /* not JSON: keep the status line */
  }
  return new ApiError(res.status, message);
}

async function api(method, path, { json, form } = {}) {
  const headers = {};
  if (token()) headers.Authorization = `Bearer ${token()}`;
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form) {
    body = form;
  }
  let res;
  try {
    res = await fetch(path, { method, headers, body });
  } catch (e) {
    throw new ApiError(0, "The studio cannot reach the IDLock gateway. Check your connection and try again.");
  }
  if (res.status === 401 && token()) {
    sessionStorage.removeItem(TOKEN_KEY);
    location.hash = "#/signin";
    throw new ApiError(401, "Your session has ended. Please sign in again.");
  }
  if (!res.ok) throw await errorOf(res);
  if (res.status === 204) return null;
  return res.json();
}

// Server-sent events over fetch (EventSource cannot send the Authorization header).
async function followJob(jobId, onEvent, signal) {
  const res = await fetch(`/api/v1/job/${encodeURIComponent(jobId)}/events`, {
    headers: { Authorization: `Bearer ${token()}` },
    signal,
  });
  if (!res.ok) throw await errorOf(res);
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = "message";
      const data = [];
      for (const line of frame.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      }
      if (data.length) onEvent(event, JSON.parse(data.join("\n")));
    }
  }
}

function confirmDialog(text, okLabel) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-ok").textContent = okLabel;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.returnValue = "cancel";
    dialog.showModal();
  });
}

// ---- views -------------------------------------------------------------------------------------------------

const view = () => document.getElementById("view");

function show(...nodes) {
  const main = view();
  main.replaceChildren(...nodes);
  const heading = main.querySelector("h1");
  if (heading) document.title = `${heading.textContent} · IDLock Studio`;
  main.focus({ preventScroll: true });
}

function busy(button, text) {
  const before = button.textContent;
  button.disabled = true;
  button.textContent = text;
  return () => {
    button.disabled = false;
    button.textContent = before;
  };
}

function authView(mode) {
  const signingUp = mode === "signup";
  const email = h("input", { type: "email", name: "email", autocomplete: "email", required: true });
  const password = h("input", {
    type: "password",
    name: "password",
    autocomplete: signingUp ? "new-password" : "current-password",
    required: true,
  });
  const name = h("input", { type: "text", name: "name", autocomplete: "name", maxlength: 200 });
  const submit = h("button", { type: "submit" }, signingUp ? "Create account" : "Sign in");
  const form = h(
    "form",
    { class: "card narrow", "aria-labelledby": "auth-title" },
    h("h1", { id: "auth-title" }, signingUp ? "Create your account" : "Sign in"),
    signingUp ? field("Your name (optional)", name) : null,
    field("Email", email),
    field("Password", password, signingUp ? "At least 10 characters." : null),
    submit,
    h(
      "p",
      {},
      signingUp ? "Already have an account? " : "New to IDLock? ",
      h("a", { href: signingUp ? "#/signin" : "#/signup" }, signingUp ? "Sign in" : "Create an account"),
    ),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const done = busy(submit, signingUp ? "Creating…" : "Signing in…");
    try {
      const creds = { email: email.value.trim(), password: password.value };
      if (signingUp) await api("POST", "/auth/register", { json: { ...creds, name: name.value.trim() } });
      const t = await api("POST", "/auth/login", { json: creds });
      sessionStorage.setItem(TOKEN_KEY, t.access_token);
      notice("");
      location.hash = "#/characters";
    } catch (e) {
      notice(e.message);
    } finally {
      done();
    }
  });
  show(form);
  email.focus();
}

async function charactersView() {
  const page = await api("GET", "/api/v1/characters?page_size=100");
  const list = h("ul", { class: "grid", "aria-label": "Your characters" });
  for (const c of page.items) {
    list.append(
      h(
        "li",
        { class: "card character" },
        h("h2", {}, h("a", { href: `#/c/${encodeURIComponent(c.character_id)}` }, c.name)),
        h("p", { class: "muted" }, c.description || "No description"),
        h(
          "p",
          {},
          h("span", { class: `badge ${c.status}` }, c.status === "ready" ? "Ready" : "Needs more photos"),
          ` ${c.episode_count} scene${c.episode_count === 1 ? "" : "s"}`,
        ),
      ),
    );
  }
  show(
    h(
      "section",
      {},
      h("div", { class: "row spread" }, h("h1", {}, "Characters"), h("a", { class: "button", href: "#/new" }, "New character")),
      page.items.length ? list : h("p", { class: "empty" }, "No characters yet. Create one from 1–5 photos of a person."),
    ),
  );
}

function sheetFields(sheet, prefix) {
  const s = sheet || {};
  const controls = {
    face_description: h("textarea", { rows: 2, maxlength: 1000 }, s.face_description || ""),
    hair: h("input", { type: "text", maxlength: 200, value: s.hair || "" }),
    eyes: h("input", { type: "text", maxlength: 100, value: s.eyes || "" }),
    distinctive_marks: h("input", { type: "text", value: (s.distinctive_marks || []).join(", ") }),
    semantic_tags: h("input", { type: "text", value: (s.semantic_tags || []).join(", ") }),
    must_keep_traits: h("input", { type: "text", value: (s.must_keep_traits || []).join(", ") }),
  };
  for (const [k, el] of Object.entries(controls)) el.id = `${prefix}-${k}`;
  const fieldset = h(
    "fieldset",
    { class: "sheet" },
    h("legend", {}, "Character sheet"),
    field("Face", controls.face_description, "The face in words, e.g. “oval face, freckles across the nose”."),
    h("div", { class: "pair" }, field("Hair", controls.hair), field("Eyes", controls.eyes)),
    field("Distinctive marks", controls.distinctive_marks, "Comma separated, e.g. “scar over left eyebrow”."),
    field("Tags", controls.semantic_tags, "Comma separated, e.g. “knight, northerner”."),
    field("Must keep", controls.must_keep_traits, "Traits every scene must keep, comma separated."),
  );
  const values = () => ({
    face_description: controls.face_description.value.trim(),
    hair: controls.hair.value.trim(),
    eyes: controls.eyes.value.trim(),
    distinctive_marks: splitList(controls.distinctive_marks.value),
    semantic_tags: splitList(controls.semantic_tags.value),
    must_keep_traits: splitList(controls.must_keep_traits.value),
  });
  return { fieldset, values };
}

function qualityReport(result) {
  const items = result.reference_quality.map((q) => {
    const verdict = q.accepted ? "accepted" : "not used";
    const faces = `${q.faces_found} face${q.faces_found === 1 ? "" : "s"} found`;
    const issues = q.issues.length ? ` — ${q.issues.join("; ")}` : "";
    return h("li", { class: q.accepted ? "ok" : "bad" }, `Photo ${q.index + 1}: ${verdict}, ${faces}${issues}`);
  });
  return h(
    "section",
    { class: "card", "aria-labelledby": "quality-title" },
    h("h2", { id: "quality-title" }, "Photo check"),
    h("ul", { class: "quality" }, items),
    result.status_reasons.length ? h("p", {}, result.status_reasons.join(" ")) : null,
  );
}

function newCharacterView() {
  const photos = [];
  const name = h("input", { type: "text", required: true, maxlength: 200, autocomplete: "off" });
  const description = h("textarea", { rows: 3, maxlength: 4000 });
  const sheet = sheetFields({}, "new");
  const input = h("input", { type: "file", accept: "image/jpeg,image/png,image/webp", multiple: true, class: "visually-hidden" });
  const previews = h("ul", { class: "previews", "aria-label": "Selected photos" });
  const consent = h("input", { type: "checkbox", required: true, id: "consent" });
  const submit = h("button", { type: "submit" }, "Create character");
  const report = h("div", { "aria-live": "polite" });

  function renderPreviews() {
    previews.replaceChildren(
      ...photos.map((file, i) => {
        const url = URL.createObjectURL(file);
        return h(
          "li",
          {},
          h("img", { src: url, alt: `Photo ${i + 1}: ${file.name}`, onload: () => URL.revokeObjectURL(url) }),
          h("button", { type: "button", class: "secondary small", "aria-label": `Remove photo ${i + 1}`, onclick: () => { photos.splice(i, 1); renderPreviews(); } }, "Remove"),
        );
      }),
    );
    dropCount.textContent = photos.length ? `${photos.length} of ${MAX_PHOTOS} photos selected.` : "No photos selected.";
  }
  function add(files) {
    for (const f of files) {
      if (!f.type.startsWith("image/")) {
        notice(`${f.name} is not an image.`);
        continue;
      }
      if (photos.length >= MAX_PHOTOS) {
        notice(`At most ${MAX_PHOTOS} photos: ${f.name} was left out.`);
        break;
      }
      photos.push(f);
    }
    renderPreviews();
  }
  input.addEventListener("change", () => {
    add(input.files);
    input.value = "";
  });
  const dropCount = h("span", { class: "muted" }, "No photos selected.");
  const drop = h(
    "label",
    { class: "drop", for: "photos" },
    h("strong", {}, "Drop 1–5 photos here, or choose files"),
    h("span", { class: "muted" }, "One person, face clearly visible, well lit. JPEG, PNG or WebP."),
    dropCount,
  );
  input.id = "photos";
  for (const evName of ["dragenter", "dragover"]) {
    drop.addEventListener(evName, (ev) => {
      ev.preventDefault();
      drop.classList.add("over");
    });
  }
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (ev) => {
    ev.preventDefault();
    drop.classList.remove("over");
    add(ev.dataTransfer.files);
  });

  const form = h(
    "form",
    { class: "card", "aria-labelledby": "new-title" },
    h("h1", { id: "new-title" }, "New character"),
    field("Name", name),
    field("Description", description, "Who they are; it goes into every scene's prompt."),
    h("fieldset", {}, h("legend", {}, "Reference photos"), input, drop, previews),
    sheet.fieldset,
    h(
      "div",
      { class: "consent" },
      consent,
      h("label", { for: "consent" }, "I confirm I have the right to use these photos of this person, with their consent."),
    ),
    submit,
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!photos.length) {
      notice("Add at least one photo of the character's face.");
      return;
    }
    const data = new FormData();
    data.append("name", name.value.trim());
    data.append("description", description.value.trim());
    data.append("consent", consent.checked ? "true" : "false");
    const s = sheet.values();
    for (const [k, v] of Object.entries(s)) {
      if (Array.isArray(v)) v.forEach((item) => data.append(k, item));
      else if (v) data.append(k, v);
    }
    photos.forEach((f) => data.append("image", f, f.name));
    const done = busy(submit, "Checking photos…");
    try {
      const made = await api("POST", "/api/v1/characters", { form: data });
      notice("");
      report.replaceChildren(
        qualityReport(made),
        h("p", {}, made.status === "ready" ? "The character is ready. " : "The character needs better photos before scenes can be made. ", h("a", { href: `#/c/${encodeURIComponent(made.character_id)}` }, `Open ${name.value.trim()}`)),
      );
      form.replaceWith(report);
      report.querySelector("a").focus();
    } catch (e) {
      // the mesh counts reference images from 0; people count photos from 1
      notice(e.message.replace(/reference image (\d+)/g, (_, n) => `photo ${Number(n) + 1}`));
    } finally {
      done();
    }
  });
  show(form, report);
  name.focus();
}

function chips(state, ended) {
  const list = h("ul", { class: "chips", "aria-label": "Story state in effect" });
  // the API gives every category (clothing, injuries, props, setting, mood), in order
  for (const [cat, items] of Object.entries(state || {})) {
    for (const item of items) {
      list.append(h("li", { class: `chip ${cat}`, title: `${cat}, since scene ${item.since_scene}` }, `${item.name}`, h("span", { class: "since" }, ` · ${cat} · since scene ${item.since_scene}`)));
    }
  }
  for (const items of Object.values(ended || {})) {
    for (const item of items) {
      list.append(h("li", { class: "chip ended", title: `ended in scene ${item.until_scene}` }, h("s", {}, item.name), h("span", { class: "since" }, ` · ended in scene ${item.until_scene}`)));
    }
  }
  if (!list.children.length) list.append(h("li", { class: "chip none" }, "no recorded state"));
  return list;
}

function idrText(idr) {
  if (!idr) return "no face scored";
  return `IDR ${pct(idr.calibrated)} (raw cosine ${idr.raw.toFixed(3)}) — ${idr.verdict}`;
}

function copyBadge(ep) {
  if (ep.near_copy === null || ep.near_copy === undefined) return null;
  const sim = `${pct(ep.copy_similarity)} pixel similarity to a reference photo`;
  return ep.near_copy
    ? h("span", { class: "badge copy", title: "The face is the reference photo's: the IDR says little, and the scene is never used for training." }, `Near-copy of a reference (${sim})`)
    : h("span", { class: "badge original" }, `Not a copy (${sim})`);
}

function sceneCard(ep) {
  const media = ep.video && ep.video.url
    ? h("video", { src: ep.video.url, controls: true, preload: "metadata", poster: ep.image && ep.image.url, "aria-label": `Scene ${ep.scene_index} video` })
    : ep.image && ep.image.url
      ? h("img", { src: ep.image.url, alt: `Scene ${ep.scene_index}: ${ep.prompt}`, loading: "lazy", width: ep.image.width, height: ep.image.height })
      : h("p", { class: "muted" }, "No image stored.");
  const ctx = ep.context;
  const feedbackStatus = h("span", { class: "muted", "aria-live": "polite" });
  const rate = async (rating) => {
    try {
      await api("POST", `/api/v1/job/${encodeURIComponent(ep.job_id)}/feedback`, { json: { rating } });
      feedbackStatus.textContent = rating === "up" ? "Thanks: marked as a good result." : "Thanks: marked as a poor result.";
    } catch (e) {
      notice(e.message);
    }
  };
  return h(
    "li",
    { class: "card scene", "data-scene": ep.scene_index },
    h("h3", {}, `Scene ${ep.scene_index}`),
    h("figure", {}, media, h("figcaption", {}, ep.prompt)),
    h(
      "p",
      { class: "meta" },
      h("span", { class: "badge provider" }, ep.provider_label || "renderer not recorded"),
      " ",
      h("span", { class: `badge ${ep.idr ? ep.idr.verdict : "none"}` }, idrText(ep.idr)),
      " ",
      copyBadge(ep),
    ),
    ep.with_characters && ep.with_characters.length ? h("p", { class: "muted with" }, "With " + ep.with_characters.map((w) => (w.role ? `${w.name} (${w.role})` : w.name)).join(", ")) : null,
    ctx ? chips(ctx.state, ctx.ended) : chips(null, null),
    ctx
      ? h(
          "details",
          { class: "prompt" },
          h("summary", {}, "Composed prompt"),
          h("p", { class: "muted" }, `Engine: ${ctx.engine}${ctx.cached ? " (cached)" : ""}${ctx.fallback_reason ? ` — fallback: ${ctx.fallback_reason}` : ""}`),
          h("pre", {}, ctx.prompt),
          ctx.negative_prompt ? h("p", {}, h("strong", {}, "Negative: "), ctx.negative_prompt) : null,
          ctx.episodes.length ? h("p", { class: "muted" }, "Earlier scenes used: " + ctx.episodes.map((e) => `${e.scene_index} (${e.reason})`).join(", ")) : null,
        )
      : h("p", { class: "muted" }, "The composed prompt was not kept for this scene."),
    h(
      "div",
      { class: "row" },
      h("button", { type: "button", class: "secondary small", "aria-label": `Thumbs up for scene ${ep.scene_index}`, onclick: () => rate("up") }, "Good"),
      h("button", { type: "button", class: "secondary small", "aria-label": `Thumbs down for scene ${ep.scene_index}`, onclick: () => rate("down") }, "Poor"),
      feedbackStatus,
    ),
  );
}

// ---- identity over time (the trainer's report) ---------------------------------------------------------------

const SVG_NS = "http://www.w3.org/2000/svg";
function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== null && v !== undefined) el.setAttribute(k, String(v));
  for (const c of children.flat()) if (c) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

const STAGES = {
  idle: "No golden scene yet: the best scenes are collected as they are made.",
  collecting: "Collecting golden scenes for its first trained model.",
  training: "Training a model of this character now.",
  validating: "Checking a newly trained model against the current one.",
  active: "A trained model of this character renders its scenes.",
  rejected: "The last trained model was not better, so it is not used.",
  rolled_back: "Scenes got worse with the last model, so it was rolled back.",
};
const DECISIONS = {
  retrain_requested: "Training started",
  activated: "Model activated",
  rejected: "Model rejected",
  rolled_back: "Rolled back",
  degraded: "Identity dropped",
};

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "";
}

// IDR of each recent scene, one point each (oldest left), the line coloured by the model that rendered it, and a
// mark where a decision fell. The numbers are also in the table under it.
function idrChart(report, versionOf) {
  const pts = report.recent;
  const W = 640, H = 220, L = 44, R = 12, T = 12, B = 28;
  const x = (i) => L + (pts.length === 1 ? (W - L - R) / 2 : (i * (W - L - R)) / (pts.length - 1));
  const y = (v) => T + (1 - Math.max(0, Math.min(1, v))) * (H - T - B);
  const parts = [];
  for (const v of [0, 0.5, 1]) {
    parts.push(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }), svg("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end", class: "axis" }, pct(v)));
  }
  const times = pts.map((p) => Date.parse(p.at));
  for (const d of report.decisions) {
    const t = Date.parse(d.at);
    if (!pts.length || Number.isNaN(t) || t < times[0]) continue;
    const after = times.findIndex((pt) => pt > t);
    const i = after === -1 ? pts.length - 1 : Math.max(0, after - 0.5);
    parts.push(svg("line", { x1: x(i), x2: x(i), y1: T, y2: H - B, class: `mark ${d.decision}` }, svg("title", {}, `${DECISIONS[d.decision] || d.decision}: ${d.reason}`)));
  }
  for (let i = 1; i < pts.length; i++) {
    parts.push(svg("line", { x1: x(i - 1), y1: y(pts[i - 1].idr), x2: x(i), y2: y(pts[i].idr), class: `seg v${versionOf(pts[i].lora_id)}` }));
  }
  pts.forEach((p, i) => {
    const model = p.lora_id ? `model v${versionOf(p.lora_id)}` : "base model";
    parts.push(svg("circle", { cx: x(i), cy: y(p.idr), r: 4, class: `pt v${versionOf(p.lora_id)}` }, svg("title", {}, `${pct(p.idr)} · ${model} · ${p.provider} · ${when(p.at)}`)));
  });
  parts.push(svg("text", { x: L, y: H - 8, class: "axis" }, "older"), svg("text", { x: W - R, y: H - 8, "text-anchor": "end", class: "axis" }, "newer"));
  const overall = report.idr.count ? `mean ${pct(report.idr.mean)}, lowest ${pct(report.idr.min)}` : "no scene scored yet";
  return svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "idr-chart", role: "img", "aria-label": `Identity retention of the last ${pts.length} scenes: ${overall}` }, parts);
}

function loraRows(listed, onActivate, onRollback) {
  if (!listed.items.length) return h("p", { class: "muted" }, "No trained model yet.");
  const gain = (g) => (g === null ? "—" : `${g >= 0 ? "+" : ""}${Math.round(g * 100)} pts`);
  return h(
    "table",
    { class: "loras" },
    h("caption", { class: "visually-hidden" }, "Trained models of this character"),
    h("thead", {}, h("tr", {}, ["Model", "Status", "Scenes trained on", "Validated IDR (before → with it)", "Activated", ""].map((t) => h("th", { scope: "col" }, t)))),
    h(
      "tbody",
      {},
      [...listed.items].reverse().map((l) =>
        h(
          "tr",
          { "data-version": l.version },
          h("th", { scope: "row" }, `v${l.version}`),
          h("td", {}, h("span", { class: `badge ${l.status}` }, l.status)),
          h("td", {}, l.training_images),
          h("td", {}, l.validated_idr === null ? "—" : `${l.baseline_idr === null ? "—" : pct(l.baseline_idr)} → ${pct(l.validated_idr)} (${gain(l.gain)})`),
          h("td", {}, when(l.activated_at) || "—"),
          h(
            "td",
            {},
            l.status === "active"
              ? h("button", { type: "button", class: "secondary small", onclick: onRollback }, "Roll back")
              : l.status === "archived"
                ? h("button", { type: "button", class: "secondary small", "aria-label": `Use model v${l.version}`, onclick: () => onActivate(l.version) }, "Use")
                : null,
          ),
        ),
      ),
    ),
  );
}

async function learningCard(id, name) {
  const path = `/api/v1/characters/${encodeURIComponent(id)}`;
  const card = h("section", { class: "card learning", "aria-labelledby": "learning-title" }, h("h2", { id: "learning-title" }, "Identity over time"), h("p", { class: "muted" }, "Loading…"));
  const fill = async () => {
    let report, listed;
    try {
      [report, listed] = await Promise.all([api("GET", `${path}/metrics`), api("GET", `${path}/loras`)]);
    } catch (e) {
      card.replaceChildren(card.firstChild, h("p", { class: "muted" }, `The learning report is unavailable: ${e.message}`));
      return;
    }
    const versionOf = (loraId) => (listed.items.find((l) => l.lora_id === loraId) || { version: 0 }).version;
    const act = async (method, url, text, okLabel) => {
      if (!(await confirmDialog(text, okLabel))) return;
      try {
        await api(method, url);
        notice("");
        await fill();
      } catch (e) {
        notice(e.message);
      }
    };
    const onActivate = (v) => act("POST", `${path}/loras/${v}/activate`, `Render ${name}'s scenes with model v${v} from now on?`, `Use v${v}`);
    const onRollback = () => act("POST", `${path}/loras/rollback`, `Stop using the active model and go back to the one before it?`, "Roll back");
    const next = report.golden_until_training ? `${report.golden_until_training} more golden scenes until the next training.` : "Automatic training is off.";
    const weeks = Object.entries(report.idr_by_week);
    card.replaceChildren(
      card.firstChild,
      h("p", { class: "stage", "data-stage": report.stage }, STAGES[report.stage] || report.stage, " ", h("span", { class: "muted" }, `${report.golden_images} golden scenes. ${next}`)),
      report.recent.length
        ? h(
            "figure",
            { class: "chart" },
            idrChart(report, versionOf),
            h("figcaption", { class: "muted" }, "IDR of each recent scene as delivered, coloured by the model that rendered it; a dashed line marks a decision. ", h("span", { class: "legend" }, [...new Set(report.recent.map((p) => versionOf(p.lora_id)))].map((v) => h("span", { class: `key v${v}` }, v ? `model v${v}` : "base model")))),
          )
        : h("p", { class: "muted" }, "No scene scored yet."),
      weeks.length
        ? h(
            "details",
            {},
            h("summary", {}, "By week"),
            h("table", { class: "weeks" }, h("thead", {}, h("tr", {}, ["Week", "Scenes", "Mean IDR", "Lowest"].map((t) => h("th", { scope: "col" }, t)))), h("tbody", {}, weeks.map(([w, st]) => h("tr", {}, h("th", { scope: "row" }, w), h("td", {}, st.count), h("td", {}, pct(st.mean)), h("td", {}, pct(st.min)))))),
          )
        : null,
      h("h3", {}, "Trained models"),
      loraRows(listed, onActivate, onRollback),
      report.decisions.length
        ? h("details", { class: "decisions" }, h("summary", {}, "Decisions"), h("ol", { reversed: true }, [...report.decisions].reverse().slice(0, 20).map((d) => h("li", {}, h("strong", {}, DECISIONS[d.decision] || d.decision), ` · ${when(d.at)} — ${d.reason}`))))
        : null,
    );
  };
  fill();
  return card;
}

async function characterView(id) {
  const path = `/api/v1/characters/${encodeURIComponent(id)}`;
  const [c, history] = await Promise.all([api("GET", path), api("GET", `${path}/history?page_size=50`)]);

  // the sheet editor
  const name = h("input", { type: "text", required: true, maxlength: 200, value: c.name });
  const description = h("textarea", { rows: 3, maxlength: 4000 }, c.description);
  const sheet = sheetFields(c.sheet, "edit");
  const save = h("button", { type: "submit" }, "Save changes");
  const saved = h("span", { class: "muted", "aria-live": "polite" });
  const editor = h(
    "form",
    { class: "card", "aria-labelledby": "sheet-title" },
    h("h2", { id: "sheet-title" }, "Details and sheet"),
    field("Name", name),
    field("Description", description),
    sheet.fieldset,
    h("div", { class: "row" }, save, saved),
  );
  editor.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const done = busy(save, "Saving…");
    try {
      const updated = await api("PATCH", path, { json: { name: name.value.trim(), description: description.value.trim(), sheet: sheet.values() } });
      saved.textContent = `Saved (memory version ${updated.memory_version}). The next scene uses it.`;
      notice("");
    } catch (e) {
      notice(e.message);
    } finally {
      done();
    }
  });

  // the generate form
  const prompt = h("textarea", { rows: 3, required: true, maxlength: 4000 });
  const styles = h("textarea", { rows: 2 });
  const refine = h("input", { type: "checkbox", id: "opt-refine" });
  const video = h("input", { type: "checkbox", id: "opt-video" });
  const go = h("button", { type: "submit" }, "Generate");
  const progress = h("progress", { max: STEPS.length, value: 0, "aria-label": "Generation progress" });
  const status = h("p", { class: "status", "aria-live": "polite" });
  const result = h("div", { class: "result" });
  const tracker = h("div", { class: "tracker", hidden: true }, progress, status, result);
  const generate = h(
    "form",
    { class: "card", "aria-labelledby": "gen-title" },
    h("h2", { id: "gen-title" }, "New scene"),
    field("What happens", prompt, "e.g. “she draws her silver sword at the castle gate”."),
    field("Style overrides", styles, "One per line, e.g. “watercolour” or “negative: blur”."),
    h("div", { class: "row" }, h("span", { class: "check" }, refine, h("label", { for: "opt-refine" }, "Always refine the face")), h("span", { class: "check" }, video, h("label", { for: "opt-video" }, "Video"))),
    go,
    tracker,
  );
  generate.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const done = busy(go, "Generating…");
    tracker.hidden = false;
    progress.value = 0;
    result.replaceChildren();
    const seen = new Set();
    const started = performance.now();
    try {
      const body = {
        character_id: id,
        prompt: prompt.value.trim(),
        style_overrides: styles.value.split("\n").map((s) => s.trim()).filter(Boolean),
        options: { refine_face: refine.checked, video: video.checked },
      };
      const accepted = await api("POST", "/api/v1/generate", { json: body });
      status.textContent = "Queued…";
      let final = null;
      await followJob(accepted.job_id, (event, data) => {
        const msg = data.message || "";
        const step = STEPS.find((s) => msg.startsWith(`${s} `));
        if (step) seen.add(step);
        progress.value = seen.size;
        if (data.job) final = data.job;
        if (event === "error") status.textContent = (data.error && data.error.message) || "The job stream failed.";
        else status.textContent = step ? `${step} done (${seen.size} of ${STEPS.length})` : msg || (data.job ? data.job.status : event);
      });
      if (!final) throw new ApiError(0, "The job ended without a result.");
      if (final.status !== "succeeded") {
        const why = final.error ? final.error.message : final.status;
        throw new ApiError(0, `The scene was not made: ${why}`);
      }
      progress.value = STEPS.length;
      const secs = ((performance.now() - started) / 1000).toFixed(1);
      status.textContent = `Done in ${secs} s.`;
      await characterView(id);
      const first = view().querySelector(".scene");
      if (first) first.setAttribute("data-new", "true");
    } catch (e) {
      notice(e.message);
      status.textContent = "Failed.";
    } finally {
      done();
    }
  });

  const forget = h("button", { type: "button", class: "danger" }, "Delete character");
  forget.addEventListener("click", async () => {
    const ok = await confirmDialog(`Delete ${c.name} and everything IDLock holds about them (photos, scenes, memory, trained models)? This cannot be undone.`, `Delete ${c.name}`);
    if (!ok) return;
    try {
      await api("DELETE", path);
      flash = `${c.name} was deleted everywhere.`;
      location.hash = "#/characters";
    } catch (e) {
      notice(e.message);
    }
  });

  const refs = h("ul", { class: "refs", "aria-label": "Reference photos" }, c.reference_images.filter(Boolean).map((r, i) => h("li", {}, h("img", { src: r.url, alt: `Reference photo ${i + 1} of ${c.name}`, width: 96, height: 96 }))));
  const timeline = h("ol", { class: "timeline", reversed: true, "aria-label": "Story timeline, newest first" }, history.items.map(sceneCard));
  show(
    h(
      "section",
      {},
      h("div", { class: "row spread" }, h("h1", {}, c.name), h("span", { class: `badge ${c.status}` }, c.status === "ready" ? "Ready" : "Needs more photos")),
      c.status_reasons.length ? h("p", { class: "muted" }, c.status_reasons.join(" ")) : null,
      refs,
      await learningCard(id, c.name),
      h("div", { class: "columns" }, h("div", {}, generate, editor, forget), h("section", { "aria-labelledby": "story-title" }, h("h2", { id: "story-title" }, "Story"), history.story_summary ? h("p", { class: "muted" }, history.story_summary) : null, history.items.length ? timeline : h("p", { class: "empty" }, "No scenes yet: describe the first one."))),
    ),
  );
}

async function keysView() {
  const keys = await api("GET", "/auth/api-keys");
  const label = h("input", { type: "text", maxlength: 100 });
  const create = h("button", { type: "submit" }, "Create key");
  const shown = h("div", { "aria-live": "polite" });
  const form = h("form", { class: "card" }, h("h2", {}, "New API key"), field("Label", label, "e.g. the service that will use it."), create, shown);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const k = await api("POST", "/auth/api-keys", { json: { name: label.value.trim() } });
      await keysView();
      view().querySelector("form").append(h("p", { class: "notice info" }, "Copy this key now; it is not shown again: ", h("code", {}, k.api_key)));
    } catch (e) {
      notice(e.message);
    }
  });
  const rows = keys.map((k) =>
    h(
      "li",
      { class: "row spread" },
      h("span", {}, h("strong", {}, k.name || "unnamed"), ` created ${new Date(k.created_at).toLocaleString()}`, k.last_used_at ? `, last used ${new Date(k.last_used_at).toLocaleString()}` : ", never used", k.revoked ? " — revoked" : ""),
      k.revoked
        ? null
        : h("button", { type: "button", class: "secondary small", "aria-label": `Revoke key ${k.name || k.api_key_id}`, onclick: async () => {
            try {
              await api("DELETE", `/auth/api-keys/${encodeURIComponent(k.api_key_id)}`);
              await keysView();
            } catch (e) {
              notice(e.message);
            }
          } }, "Revoke"),
    ),
  );
  show(h("section", {}, h("h1", {}, "API keys"), h("p", { class: "muted" }, "Services call the API with the header X-API-Key."), form, h("ul", { class: "keys card" }, rows.length ? rows : h("li", {}, "No keys yet."))));
}

// ---- routing -----------------------------------------------------------------------------------------------

async function route() {
  const hash = location.hash || "#/characters";
  const signedIn = Boolean(token());
  document.getElementById("nav").hidden = !signedIn;
  if (!signedIn && !["#/signin", "#/signup"].includes(hash)) {
    location.hash = "#/signin";
    return;
  }
  try {
    if (hash === "#/signin" || hash === "#/signup") return authView(hash.slice(2));
    if (signedIn && !document.getElementById("who").textContent) {
      const me = await api("GET", "/auth/me");
      document.getElementById("who").textContent = me.name || me.email;
    }
    if (hash === "#/new") return newCharacterView();
    if (hash === "#/keys") return await keysView();
    if (hash.startsWith("#/c/")) return await characterView(decodeURIComponent(hash.slice(4)));
    return await charactersView();
  } catch (e) {
    notice(e.message);
    if (e.status === 404) show(h("p", { class: "empty" }, "Not found. ", h("a", { href: "#/characters" }, "Back to your characters")));
  }
}

// a message for the next page (e.g. "deleted"), shown once the hash has changed
let flash = "";

window.addEventListener("hashchange", () => {
  notice(flash, "info");
  flash = "";
  route();
});
window.addEventListener("DOMContentLoaded", () => {
  document.getElementById("signout").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    document.getElementById("who").textContent = "";
    location.hash = "#/signin";
  });
  route();
});
