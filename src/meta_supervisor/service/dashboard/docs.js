/* Renders the generated OpenAPI document: every path, method, parameter and answer. */
"use strict";
(async () => {
  const main = document.getElementById("api");
  const spec = await (await fetch("/v1/openapi.json")).json();
  const esc = (s) => String(s ?? "").replace(/[&<>]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;" }[c]));
  const parts = [`<section class="wide"><h2>${esc(spec.info.title)} ${esc(spec.info.version)}</h2>` +
    `<p>${esc(spec.info.description)}</p></section>`];
  for (const [path, methods] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      const params = (op.parameters || []).map((p) =>
        `<tr><td><code>${esc(p.name)}</code></td><td>${esc(p.in)}</td>` +
        `<td>${p.required ? "required" : ""}</td><td>${esc(p.description || p.schema?.pattern || "")}</td></tr>`).join("");
      const answers = Object.entries(op.responses || {}).map(([code, r]) =>
        `${esc(code)} ${esc(r.description)}`).join("; ");
      parts.push(`<section class="wide"><h2><code>${method.toUpperCase()} ${esc(path)}</code> ` +
        `${esc(op.summary)}</h2><p>${esc(op.description).replace(/\n\n/g, "<br>")}</p>` +
        (params ? `<table><tbody>${params}</tbody></table>` : "") +
        `<p class="muted">answers: ${answers}</p></section>`);
    }
  }
  main.innerHTML = parts.join("");
})();
