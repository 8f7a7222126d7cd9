// Builds the web app into dist/ (committed; the vireo binary embeds it, see docs/web.md):
// content-hashed bundles under dist/assets/ and an index.html that names them.
//
//   node build.mjs [--outdir DIR]    (default: dist, beside this file)
//
// The same sources always give byte-identical output, so scripts/build-web.sh --check
// can tell a stale dist/ by diffing a fresh build against it.

import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import * as esbuild from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({ options: { outdir: { type: "string", default: join(here, "dist") } } });
const outdir = resolve(values.outdir);
const assets = join(outdir, "assets");

await rm(outdir, { recursive: true, force: true });
await mkdir(assets, { recursive: true });

const result = await esbuild.build({
  absWorkingDir: here,
  entryPoints: ["src/main.ts", "src/app.css"],
  outdir: assets,
  bundle: true,
  format: "esm",
  // Console pages pull in xterm.js and noVNC through import(): each becomes a chunk
  // that is fetched only when such a page opens.
  splitting: true,
  minify: true,
  target: ["chrome120", "firefox120", "safari16"],
  entryNames: "[name]-[hash]",
  chunkNames: "[name]-[hash]",
  assetNames: "[name]-[hash]",
  // xterm.css and uPlot.min.css bring no url()s today; inline any small asset rather than
  // add another request.
  loader: { ".woff2": "dataurl", ".svg": "dataurl", ".png": "dataurl" },
  legalComments: "none",
  sourcemap: false,
  metafile: true,
  logLevel: "warning",
});

/** The output built from `entry`: its path and what esbuild knows of it. */
function outputOf(entry) {
  const found = Object.entries(result.metafile.outputs).find(([, output]) => output.entryPoint === entry);
  if (!found) throw new Error(`esbuild produced nothing for ${entry}`);
  return found;
}

const url = (path) => `/assets/${basename(path)}`;
const [mainPath, main] = outputOf("src/main.ts");
// The chunks main.js imports statically: preloaded so they download alongside it
// instead of after it has been parsed.
const preloads = main.imports
  .filter((imported) => imported.kind === "import-statement")
  .map((imported) => `<link rel="modulepreload" href="${url(imported.path)}">\n`)
  .join("");

// Inline, so browsers do not ask the daemon for /favicon.ico (which it does not serve).
const favicon = `data:image/svg+xml,${encodeURIComponent((await readFile(join(here, "src/favicon.svg"), "utf8")).trim())}`;

const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>Vireo</title>
<link rel="icon" href="${favicon}">
<link rel="stylesheet" href="${url(outputOf("src/app.css")[0])}">
<script type="module" src="${url(mainPath)}"></script>
${preloads}</head>
<body>
<noscript>The Vireo web console needs JavaScript.</noscript>
</body>
</html>
`;
await writeFile(join(outdir, "index.html"), html);
