// The Code tab: a note, a Copy button and the code, read-only: highlighted once Python
// sends `html` (markup built with Pygments, which escapes the code), plain text until
// then. `code` is what Copy puts on the clipboard; `note` is set as text.

function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    return navigator.clipboard.writeText(text);
  }
  // VS Code webviews and plain-http pages: the old way, through a hidden textarea.
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.style.position = "fixed";
  area.style.opacity = "0";
  document.body.append(area);
  area.select();
  const ok = document.execCommand("copy");
  area.remove();
  return ok ? Promise.resolve() : Promise.reject(new Error("copy refused"));
}

function render({ model, el }) {
  const box = document.createElement("div");
  box.className = "dem-code";
  const bar = document.createElement("div");
  bar.className = "dem-code-bar";
  const note = document.createElement("div");
  note.className = "dem-code-note";
  const copy = document.createElement("button");
  copy.className = "dem-code-copy";
  copy.type = "button";
  copy.title = "Copy the code to the clipboard";
  const body = document.createElement("div");
  body.className = "dem-code-body";
  bar.append(note, copy);
  box.append(bar, body);
  el.append(box);

  let timer = 0;
  const draw = () => {
    note.textContent = model.get("note") || "";
    const html = model.get("html");
    if (html) {
      body.innerHTML = html;
    } else {
      const plain = document.createElement("pre");
      plain.className = "dem-code-pre";
      plain.textContent = model.get("code") || "";
      body.replaceChildren(plain);
    }
    copy.hidden = !model.get("code");
    copy.textContent = "Copy";
  };
  copy.addEventListener("click", () => {
    copyText(model.get("code") || "").then(
      () => { copy.textContent = "Copied"; },
      () => { copy.textContent = "Copy failed: select the code instead"; },
    );
    clearTimeout(timer);
    timer = setTimeout(() => { copy.textContent = "Copy"; }, 2000);
  });
  model.on("change:html", draw);
  model.on("change:note", draw);
  model.on("change:code", draw);
  draw();
  return () => {
    clearTimeout(timer);
    model.off("change:html", draw);
    model.off("change:note", draw);
    model.off("change:code", draw);
  };
}

export default { render };
