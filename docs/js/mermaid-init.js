// Draw ```mermaid blocks (the state diagram, the handoff sequence) with Mermaid 11.17.2,
// served with the site (js/mermaid.min.js, MIT licence in js/mermaid.LICENSE.txt), so the
// pictures appear without network. Without JavaScript the diagrams stay readable as text.
(() => {
  const blocks = document.querySelectorAll("pre > code.language-mermaid");
  if (blocks.length === 0 || typeof mermaid === "undefined") return;
  for (const code of blocks) {
    const diagram = document.createElement("div");
    diagram.className = "mermaid";
    diagram.textContent = code.textContent;
    code.parentElement.replaceWith(diagram);
  }
  mermaid.initialize({ startOnLoad: false, securityLevel: "strict" });
  mermaid.run({ querySelector: "div.mermaid" });
})();
