// Renders templates with @huggingface/jinja for the byte-for-byte reference tests (reference_test.cc).
// Usage: node render_reference.mjs TOOLS_DIR CASES.json
// CASES.json: [{"template": "...", "context": {...}}, ...]; prints [{"ok": true, "output": "..."} |
// {"ok": false, "error": "..."}, ...] as JSON on stdout.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [toolsDir, casesPath] = process.argv.slice(2);
const jinjaEntry = join(toolsDir, "node_modules", "@huggingface", "jinja", "dist", "index.js");
const { Template } = await import(pathToFileURL(jinjaEntry).href);

const cases = JSON.parse(readFileSync(casesPath, "utf8"));
const results = cases.map(({ template, context }) => {
  try {
    return { ok: true, output: new Template(template).render(context) };
  } catch (e) {
    return { ok: false, error: String(e && e.message ? e.message : e) };
  }
});
process.stdout.write(JSON.stringify(results));
