// The review chat: shows the conversation and sends what the user types to Python.
// Every message is data from a planner or a user, so it is set with textContent only.
// Keys typed here stay here (Enter sends, Shift+Enter is a new line): the notebook's
// shortcuts (Shift+Enter runs the cell) must not see them, in any front end.

const ROLES = { user: "You", planner: "Planner", system: "Note" };

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function messageNode(message) {
  const role = Object.hasOwn(ROLES, message.role) ? message.role : "system";
  const item = el("div", `dem-chat-msg dem-chat-${role}`);
  item.append(el("div", "dem-chat-who", ROLES[role]));
  item.append(el("div", "dem-chat-text", String(message.text ?? "")));
  const changes = Array.isArray(message.changes) ? message.changes : [];
  if (changes.length) {
    const list = el("pre", "dem-chat-changes");
    for (const line of changes) {
      const text = String(line);
      const kind = text.startsWith("+") ? "dem-chat-add" : text.startsWith("-") ? "dem-chat-del" : "";
      list.append(el("div", kind, text));
    }
    item.append(list);
  }
  return item;
}

function render({ model, el: root }) {
  const box = el("div", "dem-chat");
  // Lumino (JupyterLab, Notebook 7) skips its key bindings for events from inside this.
  box.setAttribute("data-lm-suppress-shortcuts", "true");
  const log = el("div", "dem-chat-log");
  log.setAttribute("role", "log");
  log.setAttribute("aria-live", "polite");
  const form = el("form", "dem-chat-form");
  const input = el("textarea", "dem-chat-input");
  input.rows = 2;
  input.placeholder =
    "One change per line, e.g.  DESK: first 3 characters, then upper  (Enter sends, Shift+Enter: new line)";
  const send = el("button", "dem-chat-send", "Send");
  send.type = "submit";
  form.append(input, send);
  box.append(log, form);
  root.append(box);

  const draw = () => {
    log.replaceChildren(...(model.get("messages") || []).map(messageNode));
    log.scrollTop = log.scrollHeight;
  };
  const setBusy = () => {
    const busy = Boolean(model.get("busy"));
    input.disabled = busy;
    send.disabled = busy;
    send.textContent = busy ? "Revising…" : "Send";
    box.classList.toggle("dem-chat-busy", busy);
  };
  const submit = (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text || model.get("busy")) return;
    model.send({ type: "user", text });
    input.value = "";
  };
  form.addEventListener("submit", submit);
  input.addEventListener("keydown", (event) => {
    // Shift+Enter: a new line (the default); Enter mid-composition (IME) is not a send.
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) submit(event);
  });
  // Whoever listens further up (the notebook, VS Code's webview) never sees the keys.
  box.addEventListener("keydown", (event) => event.stopPropagation());
  model.on("change:messages", draw);
  model.on("change:busy", setBusy);
  draw();
  setBusy();
  return () => {
    model.off("change:messages", draw);
    model.off("change:busy", setBusy);
  };
}

export default { render };
