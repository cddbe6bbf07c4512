// Draw ```mermaid blocks (the state diagram) with Mermaid, loaded from a CDN when the
// page is viewed. Offline, or if it cannot load, the diagram stays readable as text.
import("https://cdn.jsdelivr.net/npm/mermaid@10/dist/mermaid.esm.min.mjs")
  .then(({ default: mermaid }) => {
    const blocks = document.querySelectorAll("pre > code.language-mermaid");
    for (const code of blocks) {
      const diagram = document.createElement("div");
      diagram.className = "mermaid";
      diagram.textContent = code.textContent;
      code.parentElement.replaceWith(diagram);
    }
    mermaid.initialize({ startOnLoad: false });
    return mermaid.run({ querySelector: "div.mermaid" });
  })
  .catch(() => {});
