// The runtimeuse Node adapter: runs a JavaScript/TypeScript module that exports an
// upstream-style AgentHandler (`run(invocation, sender)`) and speaks the runtime's
// JSON-lines handler protocol (docs/handler-protocol.md) over stdin/stdout.
//
// Usage (the runtime does this for `--handler ./handler.js`):
//   node node-adapter.mjs /abs/path/to/handler.js
//
// The runtime carries this file inside its binary and writes it to a temporary file at
// start-up, so nothing but `node` has to be installed in the sandbox.

import path from "node:path";
import { createInterface } from "node:readline";
import { pathToFileURL } from "node:url";

const PROTOCOL_VERSION = 1;
const MAX_STACK = 4000;

// The protocol owns stdout. Whatever the handler prints there (console.log included)
// goes to stderr instead, where the runtime logs it.
const protocolWrite = process.stdout.write.bind(process.stdout);
process.stdout.write = (chunk, encoding, callback) =>
  process.stderr.write(chunk, encoding, callback);

let finished = false;
let nextCommandId = 1;
const pendingCommands = new Map();
const abort = new AbortController();

function emit(line) {
  protocolWrite(JSON.stringify(line) + "\n");
}

// Sends the one terminal line (result or error), then exits once it is written.
function finish(line, code = 0) {
  if (finished) return;
  finished = true;
  protocolWrite(JSON.stringify(line) + "\n", () => process.exit(code));
}

function errorLine(error, extra = {}) {
  if (error instanceof Error) {
    const metadata = { error_name: error.name, ...extra };
    if (error.stack) metadata.stack = String(error.stack).slice(0, MAX_STACK);
    if (error.metadata && typeof error.metadata === "object") {
      Object.assign(metadata, error.metadata);
    }
    return { type: "error", error: error.message || String(error), metadata };
  }
  return { type: "error", error: String(error), metadata: extra };
}

function redactor(secrets) {
  const values = secrets.filter((s) => typeof s === "string" && s.length > 0);
  return (text) => values.reduce((t, s) => t.split(s).join("[REDACTED]"), text);
}

function makeLogger(secrets) {
  const redact = redactor(secrets);
  const write = (level) => (...args) => {
    const text = args
      .map((a) => (a instanceof Error ? (a.stack ?? a.message) : typeof a === "string" ? a : safeJson(a)))
      .join(" ");
    process.stderr.write(`[handler ${level}] ${redact(text)}\n`);
  };
  return { log: write("info"), warn: write("warn"), error: write("error"), debug: write("debug") };
}

function safeJson(value) {
  try {
    return JSON.stringify(value);
  } catch {
    return String(value);
  }
}

function toResultLine(result) {
  if (result === null || typeof result !== "object") {
    throw new Error(`the handler returned ${safeJson(result)} instead of an AgentResult object`);
  }
  const metadata = result.metadata && typeof result.metadata === "object" ? result.metadata : {};
  if (result.type === "text") {
    return { type: "result", data: { type: "text", text: String(result.text ?? "") }, metadata };
  }
  // Older upstream handlers return `{structuredOutput}` without a type.
  if (result.type === "structured_output" || (result.type === undefined && "structuredOutput" in result)) {
    return {
      type: "result",
      data: { type: "structured_output", structured_output: result.structuredOutput ?? null },
      metadata,
    };
  }
  throw new Error(
    `the handler returned a result of type ${safeJson(result.type)}; expected "text" or "structured_output"`,
  );
}

// Extension of ours: lets a JS handler have the runtime run a command (streamed to the
// client, redacted, killed on cancel) and get its outcome back.
function runCommand(command, options = {}) {
  if (finished) return Promise.reject(new Error("the invocation has ended"));
  const id = String(nextCommandId++);
  const line = { type: "command", id, command: String(command) };
  if (options.cwd !== undefined) line.cwd = String(options.cwd);
  if (options.env !== undefined) line.env = options.env;
  if (options.timeoutMs !== undefined) line.timeout_ms = Math.max(0, Math.floor(options.timeoutMs));
  return new Promise((resolve, reject) => {
    pendingCommands.set(id, { resolve, reject });
    emit(line);
  });
}

function onCommandResult(line) {
  const pending = pendingCommands.get(line.id);
  if (!pending) return;
  pendingCommands.delete(line.id);
  if (line.error !== undefined) {
    pending.reject(new Error(line.error));
    return;
  }
  pending.resolve({
    exitCode: line.exit_code,
    stdout: line.stdout,
    stderr: line.stderr,
    stdoutTruncated: line.stdout_truncated,
    stderrTruncated: line.stderr_truncated,
    timedOut: line.timed_out,
  });
}

async function loadHandler(file) {
  const resolved = path.resolve(file);
  const module = await import(pathToFileURL(resolved).href);
  // A CommonJS module's exports arrive as the default export.
  const handler = module.default?.run ? module.default : (module.handler ?? module.default?.handler);
  if (!handler || typeof handler.run !== "function") {
    throw new Error(
      `module at ${file} must export an AgentHandler (as default or named "handler") with a run(invocation, sender) method`,
    );
  }
  return handler;
}

async function runInvocation(handler, line) {
  const secrets = Array.isArray(line.secrets) ? line.secrets : [];
  const invocation = {
    systemPrompt: line.system_prompt,
    userPrompt: line.user_prompt,
    model: line.model,
    outputFormat:
      line.output_schema === null || line.output_schema === undefined
        ? undefined
        : { type: "json_schema", schema: line.output_schema },
    secrets,
    env: line.env ?? {},
    signal: abort.signal,
    logger: makeLogger(secrets),
  };
  const sender = {
    sendAssistantMessage(textBlocks) {
      if (finished) return;
      const blocks = Array.isArray(textBlocks) ? textBlocks.map(String) : [String(textBlocks)];
      emit({ type: "assistant_message", text_blocks: blocks });
    },
    // Upstream sends an error_message at once and usually throws next: the first error
    // is the one the client gets; the throw that follows is then ignored.
    sendErrorMessage(error, metadata) {
      finish({ type: "error", error: String(error), metadata: metadata ?? {} });
    },
    runCommand,
  };
  try {
    const result = await handler.run(invocation, sender);
    finish(toResultLine(result));
  } catch (error) {
    finish(errorLine(error));
  }
}

async function main() {
  const file = process.argv[2];
  if (!file) {
    finish({ type: "error", error: "node adapter: no handler module given" }, 2);
    return;
  }
  let handler;
  try {
    handler = await loadHandler(file);
  } catch (error) {
    finish(errorLine(error, { error_source: "handler_module" }), 1);
    return;
  }

  let started = false;
  const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
  lines.on("line", (text) => {
    let line;
    try {
      line = JSON.parse(text);
    } catch {
      finish({ type: "error", error: `node adapter: the runtime sent a line that is not JSON: ${text.slice(0, 200)}` }, 1);
      return;
    }
    if (line.type === "invocation" && !started) {
      started = true;
      if (line.protocol_version !== PROTOCOL_VERSION) {
        finish({
          type: "error",
          error: `node adapter speaks handler protocol ${PROTOCOL_VERSION}, the runtime sent ${line.protocol_version}`,
        }, 1);
        return;
      }
      runInvocation(handler, line);
    } else if (line.type === "command_result") {
      onCommandResult(line);
    } else if (line.type === "cancel") {
      abort.abort(new Error("Request cancelled"));
    }
  });
  // The runtime closed stdin: nobody is listening any more.
  lines.on("close", () => {
    if (!finished) abort.abort(new Error("the runtime closed the handler's input"));
  });
}

process.on("uncaughtException", (error) => finish(errorLine(error), 1));
process.on("unhandledRejection", (error) => finish(errorLine(error), 1));

main();
