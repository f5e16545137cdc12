"""The web chat page the server sends at GET /: plain HTML and JavaScript, no build step, no CDN.

It talks to the same server's /v1/chat/completions with stream=true, shows the reply as it arrives, and
has one button per served model, so the fine-tune and its base can be asked in turn. With retrieval on,
the forum posts the reply drew on (the stream's `sources`) are listed as links under it.
"""

CHAT_PAGE_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>forumtune chat</title>
<style>
  :root { --accent: #2563eb; --muted: #6b7280; --line: #e5e7eb; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 15px/1.5 system-ui, sans-serif; color: #111827; background: #f9fafb;
         display: flex; flex-direction: column; height: 100vh; }
  header { display: flex; gap: .75rem; align-items: center; flex-wrap: wrap; padding: .6rem 1rem;
           background: #fff; border-bottom: 1px solid var(--line); }
  header h1 { font-size: 1.05rem; margin: 0 .5rem 0 0; }
  #models { display: flex; border: 1px solid var(--line); border-radius: 8px; overflow: hidden; }
  #models button { border: 0; background: #fff; padding: .35rem .8rem; cursor: pointer; font: inherit; }
  #models button[aria-pressed="true"] { background: var(--accent); color: #fff; }
  #api-key { padding: .3rem .5rem; border: 1px solid var(--line); border-radius: 6px; }
  #new-chat { margin-left: auto; }
  button { font: inherit; }
  #log { flex: 1; overflow-y: auto; padding: 1rem; display: flex; flex-direction: column; gap: .75rem; }
  .message { max-width: 75ch; padding: .6rem .85rem; border-radius: 10px; white-space: pre-wrap;
             overflow-wrap: anywhere; }
  .message.user { align-self: flex-end; background: var(--accent); color: #fff; }
  .message.assistant { align-self: flex-start; background: #fff; border: 1px solid var(--line); }
  .message.error { align-self: center; background: #fef2f2; color: #991b1b; border: 1px solid #fecaca; }
  .who { display: block; font-size: .75rem; color: var(--muted); }
  .sources { margin: .5rem 0 0; padding: .4rem 0 0 1.4rem; border-top: 1px solid var(--line);
             font-size: .85rem; white-space: normal; }
  .sources a { color: var(--accent); }
  .sources .byline { color: var(--muted); margin-left: .3rem; }
  form { display: flex; gap: .5rem; padding: .75rem 1rem; background: #fff; border-top: 1px solid var(--line); }
  textarea { flex: 1; resize: none; padding: .5rem; border: 1px solid var(--line); border-radius: 8px;
             font: inherit; }
  #send, #stop { padding: 0 1.1rem; border-radius: 8px; border: 0; background: var(--accent); color: #fff; }
  #stop { background: #6b7280; }
  [hidden] { display: none !important; }
</style>
</head>
<body>
<header>
  <h1>forumtune chat</h1>
  <div id="models" role="group" aria-label="Model"></div>
  <input id="api-key" type="password" placeholder="API key" autocomplete="off" hidden>
  <button id="new-chat" type="button">New chat</button>
</header>
<main id="log" aria-live="polite"></main>
<form id="ask">
  <textarea id="prompt" rows="2" placeholder="Ask the forum a question (Enter sends, Shift+Enter breaks the line)"></textarea>
  <button id="send" type="submit">Send</button>
  <button id="stop" type="button" hidden>Stop</button>
</form>
<script>
"use strict";
const state = { model: null, history: [], controller: null };
const $ = (id) => document.getElementById(id);

function authHeaders() {
  const key = $("api-key").value.trim();
  return key ? { "Authorization": "Bearer " + key } : {};
}

function addMessage(role, text, label) {
  const box = document.createElement("div");
  box.className = "message " + role;
  if (label) {
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = label;
    box.append(who);
  }
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  box.append(body);
  $("log").append(box);
  box.scrollIntoView({ block: "end" });
  return box;
}

function chooseModel(name) {
  state.model = name;
  for (const button of $("models").children) {
    button.setAttribute("aria-pressed", String(button.dataset.model === name));
  }
}

async function loadModels() {
  const health = await (await fetch("/health")).json();
  $("api-key").hidden = !health.api_key_required;
  $("api-key").value = localStorage.getItem("forumtune-api-key") || "";
  for (const name of health.models) {
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.model = name;
    button.textContent = name;
    button.addEventListener("click", () => chooseModel(name));
    $("models").append(button);
  }
  chooseModel(health.models[0]);
}

function showSources(box, sources) {
  if (!sources || !sources.length) return;
  const list = document.createElement("ol");
  list.className = "sources";
  list.setAttribute("aria-label", "Sources");
  for (const source of sources) {
    const item = document.createElement("li");
    item.value = source.number;
    const link = document.createElement("a");
    link.href = source.url;
    link.target = "_blank";
    link.rel = "noopener";
    link.textContent = source.title;
    link.title = source.text;
    item.append(link);
    const byline = [source.author, source.date].filter(Boolean).join(", ");
    if (byline) {
      const span = document.createElement("span");
      span.className = "byline";
      span.textContent = byline;
      item.append(span);
    }
    list.append(item);
  }
  box.append(list);
}

async function readStream(response, onText, onSources) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\\n\\n")) >= 0) {
      const event = buffer.slice(0, cut).trim();
      buffer = buffer.slice(cut + 2);
      if (!event.startsWith("data: ") || event === "data: [DONE]") continue;
      const payload = JSON.parse(event.slice(6));
      if (payload.error) throw new Error(payload.error.message);
      if (payload.sources) onSources(payload.sources);
      const delta = payload.choices.length ? payload.choices[0].delta : {};
      if (delta.content) onText(delta.content);
    }
  }
}

async function ask(question) {
  state.history.push({ role: "user", content: question });
  addMessage("user", question);
  const box = addMessage("assistant", "", state.model);
  const text = box.querySelector(".text");
  let sources = [];
  state.controller = new AbortController();
  $("send").hidden = true;
  $("stop").hidden = false;
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: { "Content-Type": "application/json", ...authHeaders() },
      body: JSON.stringify({ model: state.model, messages: state.history, stream: true }),
      signal: state.controller.signal,
    });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new Error((body.error && body.error.message) || response.statusText);
    }
    await readStream(response, (piece) => {
      text.textContent += piece;
      box.scrollIntoView({ block: "end" });
    }, (found) => { sources = found; });
    showSources(box, sources);
  } catch (error) {
    if (error.name !== "AbortError") {
      addMessage("error", error.message);
    }
  } finally {
    state.history.push({ role: "assistant", content: text.textContent });
    box.dataset.done = "true";
    state.controller = null;
    $("send").hidden = false;
    $("stop").hidden = true;
  }
}

$("ask").addEventListener("submit", (event) => {
  event.preventDefault();
  const question = $("prompt").value.trim();
  if (!question || state.controller) return;
  $("prompt").value = "";
  ask(question);
});
$("prompt").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    $("ask").requestSubmit();
  }
});
$("stop").addEventListener("click", () => state.controller && state.controller.abort());
$("new-chat").addEventListener("click", () => {
  if (state.controller) state.controller.abort();
  state.history = [];
  $("log").replaceChildren();
});
$("api-key").addEventListener("change", () => localStorage.setItem("forumtune-api-key", $("api-key").value));
loadModels().catch((error) => addMessage("error", "Could not reach the server: " + error.message));
</script>
</body>
</html>
"""
