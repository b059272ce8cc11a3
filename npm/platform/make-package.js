#!/usr/bin/env node
// Writes one platform package (package.json, README.md) into an output directory that
// already holds bin/runtimeuse. Used by scripts/dist:
//   node npm/platform/make-package.js OUT_DIR NAME VERSION OS CPU [LIBC] TARGET
"use strict";

const fs = require("node:fs");
const path = require("node:path");

const [out, name, version, os, cpu, libc, target] = process.argv.slice(2);
if (!target) {
  process.stderr.write("usage: make-package.js OUT_DIR NAME VERSION OS CPU LIBC|- TARGET\n");
  process.exit(2);
}
const manifest = {
  name,
  version,
  description: `The runtimeuse binary for ${target} (used by runtimeuse-rs).`,
  license: "Apache-2.0",
  os: [os],
  cpu: [cpu],
  files: ["bin/runtimeuse", "README.md"],
  preferUnplugged: true,
};
if (libc !== "-") {
  manifest.libc = [libc];
}
fs.writeFileSync(path.join(out, "package.json"), JSON.stringify(manifest, null, 2) + "\n");
const readme = fs
  .readFileSync(path.join(__dirname, "README.md"), "utf8")
  .replaceAll("PACKAGE", name)
  .replaceAll("TARGET", target);
fs.writeFileSync(path.join(out, "README.md"), readme);
