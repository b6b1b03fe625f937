// The smallest function: `export default { fetch }`, as `deno serve` takes it.
export default {
  fetch(_req: Request): Response {
    return new Response("Hello, world!\n");
  },
};
