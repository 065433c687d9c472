// Keeps the keyboard inside a review panel, and tells Python when the reviewer comes
// back to it. Invisible: it acts on its panel, the closest `.dem-panel` element, which
// exists once the panel's children are attached (so it looks on each frame until then).

const PANEL = ".dem-panel";
const QUIET_MS = 2000; // at most one "interact" message per this many milliseconds

function guard(panel, model) {
  if (panel.dataset.demGuarded) return () => {};
  panel.dataset.demGuarded = "true";
  // Lumino (JupyterLab, Notebook 7) ignores its key bindings for events from inside.
  panel.setAttribute("data-lm-suppress-shortcuts", "true");
  // Anyone else listening above (VS Code's webview, the notebook): the keys stay here.
  const keep = (event) => event.stopPropagation();
  let last = 0;
  const interact = () => {
    const now = Date.now();
    if (now - last < QUIET_MS) return;
    last = now;
    model.send({ type: "interact" });
  };
  panel.addEventListener("keydown", keep);
  panel.addEventListener("pointerenter", interact);
  panel.addEventListener("focusin", interact);
  return () => {
    panel.removeEventListener("keydown", keep);
    panel.removeEventListener("pointerenter", interact);
    panel.removeEventListener("focusin", interact);
    delete panel.dataset.demGuarded;
  };
}

function render({ model, el }) {
  el.classList.add("dem-panel-frame");
  let frame = 0;
  let release = () => {};
  let tries = 0;
  const find = () => {
    const panel = el.closest(PANEL);
    if (panel) {
      release = guard(panel, model);
    } else if (tries++ < 600) {
      frame = requestAnimationFrame(find); // ~10 s: the panel is attached long before
    }
  };
  find();
  return () => {
    cancelAnimationFrame(frame);
    release();
  };
}

export default { render };
