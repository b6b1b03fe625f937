/**
 * The container and Kubernetes files parse and name only what the image provides: the flags
 * main.ts takes, the port it exposes, the health route, the user it runs as, the paths it has.
 */

import assert from "node:assert/strict";
import { parse, parseAllDocuments } from "yaml";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const read = (path: string) => Deno.readTextFile(`${ROOT}${path}`);

type Json = Record<string, unknown>;

/** Flags main.ts accepts, read from its parseArgs options. */
async function mainFlags(): Promise<Set<string>> {
  const source = await read("main.ts");
  const block = source.slice(source.indexOf("options: {"), source.indexOf("},\n  });"));
  const names = [...block.matchAll(/^\s+"?([a-z-]+)"?: \{ type:/gm)].map((m) => m[1]);
  return new Set(names.map((name) => `--${name}`));
}

function flagsIn(args: string[]): string[] {
  return args.filter((arg) => arg.startsWith("--")).map((arg) => arg.split("=")[0]);
}

async function dockerfile() {
  const text = await read("Dockerfile");
  const instruction = (name: string) =>
    text.split("\n").filter((line) => line.startsWith(`${name} `)).map((line) =>
      line.slice(name.length + 1)
    );
  return { text, instruction };
}

async function kubernetes(): Promise<Json[]> {
  const docs: Json[] = [];
  for await (const entry of Deno.readDir(`${ROOT}deploy/kubernetes`)) {
    if (!entry.name.endsWith(".yaml")) continue;
    for (const doc of parseAllDocuments(await read(`deploy/kubernetes/${entry.name}`))) {
      assert.deepEqual(doc.errors, [], entry.name);
      docs.push(doc.toJS() as Json);
    }
  }
  return docs;
}

Deno.test("Dockerfile pins the project's Deno, runs as a numeric non-root user and checks health", async () => {
  const { instruction, text } = await dockerfile();
  const ciRun = await read(".ci/run");
  const pinned = /DENO_VERSION="([\d.]+)"/.exec(ciRun)![1];
  assert.deepEqual(instruction("FROM"), [`denoland/deno:${pinned}`]);
  assert.deepEqual(instruction("USER"), ["10001:10001"]);
  assert.deepEqual(instruction("EXPOSE"), ["9000"]);
  assert.match(text, /HEALTHCHECK[\s\S]*127\.0\.0\.1:9000\/_internal\/health/);
  const cmd = JSON.parse(instruction("CMD")[0]) as string[];
  const entrypoint = JSON.parse(instruction("ENTRYPOINT")[0]) as string[];
  const flags = await mainFlags();
  for (const flag of flagsIn(cmd)) assert.ok(flags.has(flag), `unknown flag ${flag}`);
  assert.deepEqual(entrypoint.slice(-2), ["main.ts", "start"]);
  for (const copied of ["main.ts", "runtime/", "workers/", "functions/", "deno.lock"]) {
    assert.match(text, new RegExp(`COPY [^\\n]*${copied.replace(".", "\\.")}`), copied);
  }
});

Deno.test("compose.yaml builds this image and serves its port and functions folder", async () => {
  const compose = parse(await read("compose.yaml")) as Json;
  const service = (compose.services as Json)["edge-runtime"] as Json;
  assert.equal(service.build, ".");
  assert.deepEqual(service.ports, ["9000:9000"]);
  assert.deepEqual(service.volumes, ["./functions:/app/functions:ro"]);
  const flags = await mainFlags();
  for (const flag of flagsIn(service.command as string[])) assert.ok(flags.has(flag), flag);
  const graceful = Number((service.command as string[]).at(-1));
  assert.ok(Number.parseInt(service.stop_grace_period as string) > graceful);
});

Deno.test("Kubernetes manifests: probes, limits, non-root read-only pods, HPA, PDB, grace period", async () => {
  const docs = await kubernetes();
  const byKind = new Map(docs.map((doc) => [doc.kind as string, doc]));
  assert.deepEqual(
    [...byKind.keys()].sort(),
    ["Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Service"],
  );
  const deployment = byKind.get("Deployment") as Json;
  const pod = ((deployment.spec as Json).template as Json).spec as Json;
  const [container] = pod.containers as Json[];
  const args = container.args as string[];
  const flags = await mainFlags();
  for (const flag of flagsIn(args)) assert.ok(flags.has(flag), `unknown flag ${flag}`);
  const port = Number(args[args.indexOf("--port") + 1]);
  assert.equal(port, 9000);
  assert.deepEqual(container.ports, [{ name: "http", containerPort: port }]);
  for (const probe of ["readinessProbe", "livenessProbe"]) {
    assert.deepEqual((container[probe] as Json).httpGet, {
      path: "/_internal/health",
      port: "http",
    });
  }
  const limits = (container.resources as Json).limits as Json;
  assert.ok(limits.memory && limits.cpu);
  assert.deepEqual(((container.lifecycle as Json).preStop as Json).exec, {
    command: ["sleep", "5"],
  });
  const graceful = Number(args[args.indexOf("--graceful-exit-timeout") + 1]);
  assert.ok((pod.terminationGracePeriodSeconds as number) > graceful + 5);
  assert.equal((pod.securityContext as Json).runAsNonRoot, true);
  assert.equal((pod.securityContext as Json).runAsUser, 10001);
  assert.equal((container.securityContext as Json).readOnlyRootFilesystem, true);
  const mounts = (container.volumeMounts as Json[]).map((m) => m.mountPath);
  assert.ok(mounts.includes("/tmp"), "worker sockets need a writable /tmp");
  const denoDir = (container.env as Json[]).find((e) => e.name === "DENO_DIR")?.value;
  assert.ok(mounts.includes(denoDir), "DENO_DIR must be a mounted, writable volume");
  const service = byKind.get("Service") as Json;
  assert.equal(((service.spec as Json).ports as Json[])[0].targetPort, "http");
  const hpa = byKind.get("HorizontalPodAutoscaler") as Json;
  assert.equal(
    ((hpa.spec as Json).scaleTargetRef as Json).name,
    (deployment.metadata as Json).name,
  );
  const pdb = byKind.get("PodDisruptionBudget") as Json;
  assert.deepEqual(
    ((pdb.spec as Json).selector as Json).matchLabels,
    ((deployment.spec as Json).selector as Json).matchLabels,
  );
});
