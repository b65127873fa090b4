// Copy the front-end libraries the pages use from node_modules into the Python package, so
// `pip install -e . && cityhub run` serves them with no Node.js and no CDN. Run by `make ui`.
import { cpSync, mkdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const target = join(here, "..", "services", "gateway", "static", "vendor");
const files = {
  leaflet: ["dist/leaflet.js", "dist/leaflet.css", "dist/images", "LICENSE", "package.json"],
  uplot: ["dist/uPlot.iife.min.js", "dist/uPlot.min.css", "LICENSE", "package.json"],
};

rmSync(target, { recursive: true, force: true });
for (const [name, paths] of Object.entries(files)) {
  for (const path of paths) {
    const to = join(target, name, path.replace(/^dist\//, ""));
    mkdirSync(dirname(to), { recursive: true });
    cpSync(join(here, "node_modules", name, path), to, { recursive: true });
  }
}
console.log(`vendored ${Object.keys(files).join(", ")} into ${target}`);
