// Server-sent events: one event every 100 ms, five in all, each sent as soon as it is produced.
Deno.serve(() => {
  const encoder = new TextEncoder();
  let count = 0;
  let timer: ReturnType<typeof setInterval> | undefined;
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      timer = setInterval(() => {
        count++;
        controller.enqueue(encoder.encode(`data: ${JSON.stringify({ count })}\n\n`));
        if (count === 5) {
          clearInterval(timer);
          controller.close();
        }
      }, 100);
    },
    cancel() {
      clearInterval(timer);
    },
  });
  return new Response(body, {
    headers: { "content-type": "text/event-stream", "cache-control": "no-cache" },
  });
});
