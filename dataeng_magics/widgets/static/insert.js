// Asks the JupyterLab extension to insert an approved cell below the review panel.
// The widget shows nothing: when Python sets `materialise`, it dispatches a bubbling,
// cancelable DOM event from its element, inside the %%transform cell's output. The
// extension calls preventDefault() and writes `detail.result`; this reports that back.
// With no extension nobody listens, and the panel's note says `%transform materialise`.

const EVENT = "dataeng-magics:materialise";

function render({ model, el }) {
  el.classList.add("dem-cell-inserter");
  const onChange = () => {
    const request = model.get("materialise");
    if (!request || typeof request.cell !== "string") return;
    const detail = { ...request };
    const event = new CustomEvent(EVENT, { detail, bubbles: true, cancelable: true, composed: true });
    if (!el.dispatchEvent(event)) {
      model.send({ type: "materialised", nonce: request.nonce, result: detail.result || "inserted" });
    }
  };
  model.on("change:materialise", onChange);
  return () => model.off("change:materialise", onChange);
}

export default { render };
