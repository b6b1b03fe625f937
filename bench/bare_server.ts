/**
 * The baseline: serves one handler module (`export default { fetch }`) with the real `Deno.serve`
 * on 127.0.0.1, port 0, and prints the runtime's own listening line. Usage:
 * `deno run --allow-net=127.0.0.1 --allow-read=<dir> bench/bare_server.ts <handler module path>`.
 */

interface HandlerModule {
  default: { fetch: (request: Request) => Response | Promise<Response> };
}

const handlerPath = Deno.args[0];
if (!handlerPath) throw new TypeError("Cannot start the bare server: no handler module given");
// A computed import, as workers/bootstrap.ts loads functions, so both pay the same load cost.
const handlerUrl = new URL("file:///");
handlerUrl.pathname = handlerPath;
const module: HandlerModule = await import(handlerUrl.href);
Deno.serve({
  hostname: "127.0.0.1",
  port: 0,
  onListen({ hostname, port }) {
    Deno.stdout.writeSync(new TextEncoder().encode(`Listening on http://${hostname}:${port}/\n`));
  },
}, (request) => module.default.fetch(request));
