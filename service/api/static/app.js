// iorag's page: ask (streamed), sources, documents. Plain JS, same-origin API calls only.
"use strict";

const $ = (id) => document.getElementById(id);
const PAGE_SIZE = 20;
const state = {
  key: sessionStorage.getItem("iorag.key") || "",
  collection: sessionStorage.getItem("iorag.collection") || "default",
  turns: [],          // earlier turns, sent as `history`
  offset: 0,
  busy: false,
};

// --- talking to the API ---------------------------------------------------------------

function headers(extra) {
  const h = Object.assign({}, extra || {});
  if (state.key) h["Authorization"] = "Bearer " + state.key;
  if (state.collection && state.collection !== "default") h["X-Collection"] = state.collection;
  return h;
}

class ApiError extends Error {
  constructor(status, error) {
    super(error.message || "request failed");
    this.status = status;
    this.type = error.type || "Error";
    this.hint = error.hint || "";
  }
}

async function errorFrom(response) {
  let error = { type: "HTTP " + response.status, message: response.statusText || "request failed" };
  try {
    const body = await response.json();
    if (body && body.error) error = body.error;
  } catch (_) { /* not JSON: keep the status line */ }
  return new ApiError(response.status, error);
}

async function api(path, options) {
  const opts = Object.assign({}, options || {});
  opts.headers = headers(opts.headers);
  const response = await fetch(path, opts);
  if (!response.ok) throw await errorFrom(response);
  return response.json();
}

function showError(err) {
  const box = $("error");
  $("error-title").textContent = (err.status ? err.status + " " : "") + (err.type || "Error") + ":";
  $("error-message").textContent = err.message || String(err);
  $("error-hint").textContent = err.hint || "";
  box.hidden = false;
}

function clearError() { $("error").hidden = true; }

// --- status, key and collection ----------------------------------------------------------

async function refreshStatus() {
  try {
    const h = await api("/v1/health");
    if (h.documents === undefined) {
      // A server with keys tells anonymous callers only that it is up.
      $("status").textContent = "server up · enter an API key";
    } else {
      $("status").textContent = h.status === "ok"
        ? `${h.documents} documents · ${h.chunks} chunks · ${h.chat_model}`
        : "no index yet";
    }
  } catch (err) {
    $("status").textContent = "status unavailable";
  }
}

async function loadCollections() {
  // Offer the server's collections (GET /v1/collections, where collections are served);
  // any name can still be typed.
  $("collection-input").value = state.collection;
  const list = $("collection-list");
  try {
    const body = await api("/v1/collections");
    list.replaceChildren(...body.collections.map((c) => {
      const option = document.createElement("option");
      option.value = c.name;
      return option;
    }));
  } catch (_) {
    list.replaceChildren();
  }
}

function applySettings(event) {
  event.preventDefault();
  state.key = $("api-key").value.trim();
  state.collection = $("collection-input").value.trim() || "default";
  sessionStorage.setItem("iorag.key", state.key);
  sessionStorage.setItem("iorag.collection", state.collection);
  clearError();
  state.offset = 0;
  newConversation();
  refreshStatus();
  loadCollections();
  loadDocuments();
}

// --- asking ------------------------------------------------------------------------------

function newConversation() {
  state.turns = [];
  $("conversation").replaceChildren(emptyNote("Ask a question about the indexed documents. Follow-up questions use the conversation."));
  renderSources(null);
}

function emptyNote(text) {
  const p = document.createElement("p");
  p.className = "empty";
  p.textContent = text;
  return p;
}

function addTurn(role, text) {
  const conversation = $("conversation");
  conversation.querySelector(".empty")?.remove();
  const turn = document.createElement("div");
  turn.className = "turn " + role;
  const who = document.createElement("div");
  who.className = "who";
  who.textContent = role === "user" ? "You" : "Answer";
  const body = document.createElement("div");
  body.className = "text";
  body.textContent = text;
  const meta = document.createElement("div");
  meta.className = "meta";
  turn.append(who, body, meta);
  conversation.append(turn);
  conversation.scrollTop = conversation.scrollHeight;
  return turn;
}

// The answer's text with each [n] turned into a button that shows source n.
function renderAnswerText(node, text) {
  node.replaceChildren();
  const pattern = /\[(\d+)\]/g;
  let last = 0;
  for (const match of text.matchAll(pattern)) {
    node.append(document.createTextNode(text.slice(last, match.index)));
    const cite = document.createElement("button");
    cite.type = "button";
    cite.className = "cite";
    cite.textContent = match[1];
    cite.title = "show source " + match[1];
    cite.addEventListener("click", () => flashSource(Number(match[1])));
    node.append(cite);
    last = match.index + match[0].length;
  }
  node.append(document.createTextNode(text.slice(last)));
}

function flashSource(number) {
  const item = document.querySelector(`#sources li[data-number="${number}"]`);
  if (!item) return;
  item.scrollIntoView({ behavior: "smooth", block: "nearest" });
  item.classList.add("flash");
  setTimeout(() => item.classList.remove("flash"), 1200);
}

function describeLocation(location) {
  if (!location) return "";
  const parts = [];
  if (location.page != null) parts.push("page " + location.page);
  if (location.slide != null) parts.push("slide " + location.slide);
  if (location.sheet != null) parts.push("sheet " + location.sheet);
  if (location.row != null) parts.push("row " + location.row);
  for (const [key, value] of Object.entries(location)) {
    if (!["page", "slide", "sheet", "row"].includes(key)) parts.push(key + " " + value);
  }
  return parts.join(", ");
}

function renderSources(answer) {
  const list = $("sources");
  list.replaceChildren();
  $("sources-empty").hidden = Boolean(answer && answer.sources.length);
  if (!answer) return;
  const cited = new Set(answer.cited || []);
  answer.sources.forEach((hit, i) => {
    const number = i + 1;
    const item = document.createElement("li");
    item.className = "source" + (cited.has(number) ? " cited" : "");
    item.dataset.number = number;
    const head = document.createElement("div");
    head.className = "head";
    const num = document.createElement("span");
    num.className = "num";
    num.textContent = "[" + number + "]";
    const title = document.createElement("span");
    title.className = "title";
    title.textContent = hit.title || hit.doc_id;
    head.append(num, title);
    const where = document.createElement("div");
    where.className = "where";
    const place = [hit.doc_id, ...(hit.headings || []), describeLocation(hit.location)].filter(Boolean);
    where.textContent = place.join(" › ");
    const excerpt = document.createElement("div");
    excerpt.className = "excerpt";
    excerpt.textContent = hit.text;
    item.append(head, where, excerpt);
    list.append(item);
  });
}

// Server-sent events from POST /v1/ask with stream: {"delta"} pieces, the full answer, [DONE].
async function* readEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) yield { event, data: data.join("\n") };
    }
  }
}

async function ask(event) {
  event.preventDefault();
  const question = $("question").value.trim();
  if (!question || state.busy) return;
  clearError();
  state.busy = true;
  $("ask").disabled = true;
  addTurn("user", question);
  const turn = addTurn("assistant", "");
  const text = turn.querySelector(".text");
  text.classList.add("streaming");
  let answerText = "";
  try {
    const response = await fetch("/v1/ask", {
      method: "POST",
      headers: headers({ "Content-Type": "application/json", Accept: "text/event-stream" }),
      body: JSON.stringify({ question, history: state.turns, stream: true }),
    });
    if (!response.ok) throw await errorFrom(response);
    let final = null;
    for await (const { event: kind, data } of readEvents(response)) {
      if (data === "[DONE]") break;
      const payload = JSON.parse(data);
      if (kind === "error" || payload.error) throw new ApiError(0, payload.error);
      if (payload.delta !== undefined) {
        answerText += payload.delta;
        text.textContent = answerText;
      } else if (payload.answer !== undefined) {
        final = payload;
      }
    }
    if (!final) throw new ApiError(0, { type: "StreamError", message: "the answer stream ended early" });
    renderAnswerText(text, final.answer);
    renderSources(final);
    const meta = [final.model];
    if (final.query && final.query !== question) meta.push("searched for: " + final.query);
    turn.querySelector(".meta").textContent = meta.join(" · ");
    state.turns.push({ role: "user", content: question }, { role: "assistant", content: final.answer });
    $("question").value = "";
  } catch (err) {
    turn.remove();
    showError(err);
  } finally {
    text.classList.remove("streaming");
    state.busy = false;
    $("ask").disabled = false;
  }
}

// --- documents ---------------------------------------------------------------------------

async function loadDocuments() {
  const rows = $("doc-rows");
  try {
    const body = await api(`/v1/documents?offset=${state.offset}&limit=${PAGE_SIZE}`);
    rows.replaceChildren();
    for (const doc of body.documents) rows.append(documentRow(doc));
    if (!body.documents.length) {
      const tr = document.createElement("tr");
      const td = document.createElement("td");
      td.colSpan = 5;
      td.className = "empty";
      td.textContent = "No documents yet: upload some files.";
      tr.append(td);
      rows.append(tr);
    }
    $("doc-total").textContent = `(${body.total})`;
    const last = Math.min(body.offset + body.documents.length, body.total);
    $("page").textContent = body.total ? `${body.offset + 1}–${last} of ${body.total}` : "";
    $("prev").disabled = body.offset === 0;
    $("next").disabled = last >= body.total;
  } catch (err) {
    rows.replaceChildren();
    $("doc-total").textContent = "";
    if (err.type === "IndexNotFoundError") {
      $("doc-total").textContent = "(0)";
    } else if (err.status === 404 || err.status === 405) {
      // A server without GET /v1/documents: say so in place, not as an error.
      $("page").textContent = "This server does not list documents.";
      $("prev").disabled = $("next").disabled = true;
    } else {
      showError(err);
    }
  }
}

function documentRow(doc) {
  const tr = document.createElement("tr");
  tr.dataset.docId = doc.doc_id;
  const id = document.createElement("td");
  const code = document.createElement("code");
  code.textContent = doc.doc_id;
  id.append(code);
  const title = document.createElement("td");
  title.textContent = doc.title || "";
  const source = document.createElement("td");
  source.textContent = doc.source || "";
  const chunks = document.createElement("td");
  chunks.className = "num";
  chunks.textContent = doc.chunks;
  const actions = document.createElement("td");
  const remove = document.createElement("button");
  remove.type = "button";
  remove.className = "danger";
  remove.textContent = "Delete";
  remove.addEventListener("click", () => deleteDocument(doc.doc_id));
  actions.append(remove);
  tr.append(id, title, source, chunks, actions);
  return tr;
}

async function deleteDocument(docId) {
  if (!confirm(`Delete ${docId} from the index?`)) return;
  clearError();
  try {
    await api("/v1/documents/" + docId.split("/").map(encodeURIComponent).join("/"), { method: "DELETE" });
    await loadDocuments();
    refreshStatus();
  } catch (err) {
    showError(err);
  }
}

async function upload(event) {
  event.preventDefault();
  const files = $("files").files;
  if (!files.length) return;
  clearError();
  const form = new FormData();
  for (const file of files) form.append("files", file, file.name);
  $("upload").disabled = true;
  $("upload-result").textContent = "Uploading and indexing…";
  try {
    const body = await api("/v1/files", { method: "POST", body: form });
    const problems = (body.problems || []).map((p) => `${p.source}: ${p.reason}`);
    $("upload-result").textContent =
      `${body.added} added, ${body.updated} updated, ${body.unchanged} unchanged, ` +
      `${body.chunks} ${body.chunks === 1 ? "chunk" : "chunks"}.` +
      (problems.length ? " Not indexed: " + problems.join("; ") : "");
    $("files").value = "";
    await loadDocuments();
    refreshStatus();
  } catch (err) {
    $("upload-result").textContent = "";
    showError(err);
  } finally {
    $("upload").disabled = false;
  }
}

// --- wiring ------------------------------------------------------------------------------

$("api-key").value = state.key;
$("settings").addEventListener("submit", applySettings);
$("ask-form").addEventListener("submit", ask);
$("question").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) ask(event);
});
$("new-chat").addEventListener("click", newConversation);
$("upload-form").addEventListener("submit", upload);
$("error-close").addEventListener("click", clearError);
$("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE_SIZE); loadDocuments(); });
$("next").addEventListener("click", () => { state.offset += PAGE_SIZE; loadDocuments(); });

refreshStatus();
loadCollections();
loadDocuments();
