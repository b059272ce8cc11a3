#!/usr/bin/env node
// Starts the native runtimeuse binary from the platform package npm installed beside this
// one (an optional dependency selected by os/cpu/libc), passing arguments, stdio, signals
// and the exit status through. Nothing is downloaded here or at install.
"use strict";

const { spawn } = require("node:child_process");
const fs = require("node:fs");
const path = require("node:path");

/** Platform packages that can run here, best first. */
function candidates() {
  const key = `${process.platform}-${process.arch}`;
  switch (key) {
    case "linux-x64":
      // The glibc build (2.17 and later) first; the static musl build runs anywhere.
      return ["runtimeuse-rs-linux-x64", "runtimeuse-rs-linux-x64-musl"];
    case "linux-arm64":
      return ["runtimeuse-rs-linux-arm64"];
    case "darwin-x64":
      return ["runtimeuse-rs-darwin-x64"];
    case "darwin-arm64":
      return ["runtimeuse-rs-darwin-arm64"];
    default:
      return [];
  }
}

function findBinary() {
  if (process.env.RUNTIMEUSE_BINARY) {
    return process.env.RUNTIMEUSE_BINARY;
  }
  for (const name of candidates()) {
    let manifest;
    try {
      manifest = require.resolve(`${name}/package.json`);
    } catch {
      continue;
    }
    const binary = path.join(path.dirname(manifest), "bin", "runtimeuse");
    if (fs.existsSync(binary)) {
      return binary;
    }
  }
  const tried = candidates();
  process.stderr.write(
    `runtimeuse: no binary for ${process.platform}-${process.arch}` +
      (tried.length
        ? `; none of ${tried.join(", ")} is installed (were optional dependencies omitted?` +
          " reinstall without --no-optional / --omit=optional)\n"
        : "; this platform has no build\n"),
  );
  process.exit(1);
}

const child = spawn(findBinary(), process.argv.slice(2), { stdio: "inherit" });
const forwarded = ["SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT"];
for (const signal of forwarded) {
  process.on(signal, () => child.kill(signal));
}
// `npx` (npm exec) exits on SIGTERM without passing it on; a launcher whose parent went
// away stops the binary the same way, so that `kill <npx pid>` still ends the runtime.
const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent) child.kill("SIGTERM");
}, 500).unref();
child.on("error", (err) => {
  process.stderr.write(`runtimeuse: could not start the binary: ${err.message}\n`);
  process.exit(1);
});
child.on("exit", (code, signal) => {
  if (signal) {
    // End the same way the binary did, so that callers see the signal.
    for (const s of forwarded) process.removeAllListeners(s);
    process.kill(process.pid, signal);
    return;
  }
  process.exit(code ?? 1);
});
