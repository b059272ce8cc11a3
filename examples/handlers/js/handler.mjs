// An upstream-style AgentHandler, served unchanged by the Rust runtime:
//
//   runtimeuse --handler examples/handlers/js/handler.mjs
//
// The runtime runs it through its Node adapter (needs `node` on PATH). The module exports
// `handler` (a default export works too) with `run(invocation, sender)`, exactly the
// interface of the TypeScript runtime. Deterministic, so the runtime's tests drive it:
//
//   ECHO:<text>        text result <text>
//   STRUCTURED:<json>  structured output = the parsed JSON
//   STREAM:<n>         n assistant messages, then text "streamed <n> messages"
//   ERROR:<msg>        sendErrorMessage(<msg>, {source: "js_handler"}), then throws
//   THROW:<msg>        throws new Error(<msg>)
//   SLOW:<ms>          waits <ms>, rejecting when invocation.signal aborts
//   RUN:<command>      sender.runCommand (an extension of ours): the runtime runs it
//   INVOCATION         structured output describing what the handler received
//   LOG:<text>         console.log(<text>) (goes to stderr), then text "logged"
//   anything else      text result = the prompt

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      reject(new Error("aborted"));
    });
  });
}

export const handler = {
  async run(invocation, sender) {
    const prompt = invocation.userPrompt;
    invocation.logger.log(`js handler got ${prompt.slice(0, 60)}`);

    if (prompt.startsWith("ECHO:")) {
      return { type: "text", text: prompt.slice("ECHO:".length) };
    }
    if (prompt.startsWith("STRUCTURED:")) {
      return {
        type: "structured_output",
        structuredOutput: JSON.parse(prompt.slice("STRUCTURED:".length)),
        metadata: { handler: "js" },
      };
    }
    if (prompt.startsWith("STREAM:")) {
      const count = parseInt(prompt.slice("STREAM:".length), 10);
      for (let i = 0; i < count; i++) {
        sender.sendAssistantMessage([`message ${i + 1} of ${count}`]);
      }
      return { type: "text", text: `streamed ${count} messages` };
    }
    if (prompt.startsWith("ERROR:")) {
      const message = prompt.slice("ERROR:".length);
      sender.sendErrorMessage(message, { source: "js_handler" });
      throw new Error(message);
    }
    if (prompt.startsWith("THROW:")) {
      throw new Error(prompt.slice("THROW:".length));
    }
    if (prompt.startsWith("SLOW:")) {
      await sleep(parseInt(prompt.slice("SLOW:".length), 10), invocation.signal);
      return { type: "text", text: "done" };
    }
    if (prompt.startsWith("RUN:")) {
      const result = await sender.runCommand(prompt.slice("RUN:".length));
      return { type: "text", text: `exit=${result.exitCode} stdout=${result.stdout}` };
    }
    if (prompt === "INVOCATION") {
      return {
        type: "structured_output",
        structuredOutput: {
          systemPrompt: invocation.systemPrompt,
          model: invocation.model,
          outputFormat: invocation.outputFormat ?? null,
          secrets: invocation.secrets,
          envValue: invocation.env.HANDLER_TEST_VAR ?? null,
          processEnvValue: process.env.HANDLER_TEST_VAR ?? null,
          hasSignal: invocation.signal instanceof AbortSignal,
        },
      };
    }
    if (prompt.startsWith("LOG:")) {
      console.log(prompt.slice("LOG:".length));
      return { type: "text", text: "logged" };
    }
    return { type: "text", text: prompt };
  },
};
