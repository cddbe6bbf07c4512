// Colour the code blocks with highlight.js 11.8.0, served with the site
// (js/highlight.min.js, BSD-3-Clause licence in js/highlight.LICENSE.txt) instead of the
// theme's copy from a CDN. Mermaid blocks are left for mermaid-init.js to draw.
hljs.configure({ cssSelector: "pre code:not(.language-mermaid)" });
hljs.highlightAll();
