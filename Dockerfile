# One container = one main runtime. Build: docker build -t edge-runtime .
# Run:   docker run --rm -p 9000:9000 -v "$PWD/functions:/app/functions:ro" edge-runtime
FROM denoland/deno:2.9.6

WORKDIR /app
# The module cache lives in the image, warmed at build time, so workers boot without the network.
ENV DENO_DIR=/app/.deno-cache
COPY deno.json deno.lock ./
COPY main.ts ./
COPY runtime/ runtime/
COPY workers/ workers/
COPY functions/ functions/
RUN deno cache --frozen main.ts workers/bootstrap.ts functions/*/index.ts \
  && groupadd --gid 10001 edge \
  && useradd --uid 10001 --gid edge --no-create-home --shell /usr/sbin/nologin edge \
  && chown -R 10001:10001 /app/.deno-cache

# A fixed numeric user, so Kubernetes can check runAsNonRoot.
USER 10001:10001
EXPOSE 9000
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["deno", "eval", "const r = await fetch('http://127.0.0.1:9000/_internal/health'); Deno.exit(r.ok ? 0 : 1)"]
# deno is PID 1: main.ts handles SIGTERM itself (drain, beforeunload, exit) and SIGINT, and its
# workers exit with it (their stdin lifeline closes), so no init process is needed.
ENTRYPOINT ["deno", "run", "--allow-all", "--unstable-no-legacy-abort", "--frozen", "main.ts", "start"]
CMD ["--functions", "/app/functions", "--port", "9000"]
