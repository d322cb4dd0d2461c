/**
 * Kubernetes manifests, checked as rendered: each overlay goes through the real
 * `kubectl kustomize` (Debian's kubernetes-client in CI) and the objects are checked for
 * probes, limits and non-root security; Services, probes and NetworkPolicies against the
 * containers' ports; and every ConfigMap key through the owning service's own config
 * schema via the kernel's `loadConfig`, so manifests and code cannot drift apart.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";
import { ConfigError, loadConfig } from "../kernel/mod.ts";
import { needs } from "../kernel/testing.ts";
import { Deployment, StatefulSet } from "kubernetes-models/apps/v1";
import { HorizontalPodAutoscaler } from "kubernetes-models/autoscaling/v2";
import { ConfigMap, Namespace, PersistentVolumeClaim, Secret, Service } from "kubernetes-models/v1";
import { Ingress, NetworkPolicy } from "kubernetes-models/networking.k8s.io/v1";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1";
import { configSchema, envPrefix, type ServiceName, SERVICES } from "../deploy/services.ts";
import { HEALTHCHECK, TARGETS } from "../deploy/build.ts";
import { type ConfigRow, configRows, README_PATH, renderReadme } from "../deploy/config_docs.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const K8S = `${ROOT}deploy/kubernetes`;
const OVERLAYS = ["dev", "staging", "prod"] as const;
type Overlay = typeof OVERLAYS[number];
/** Secrets the staging and prod overlays reference but do not contain (created by operators). */
const EXTERNAL_SECRETS = new Set(["aetherflow-jwt", "aetherflow-users"]);
/** Which config key holds which named container port, per service. */
const PORT_KEYS: Record<ServiceName, Record<string, string[]>> = {
  gateway: { http: ["port"] },
  session: { grpc: ["port"], quantum: ["quantumPort"], metrics: ["metricsPort"] },
  statesync: { grpc: ["port"], quantum: ["quantumPort"], metrics: ["metricsPort"] },
};
/** Where each service keeps its Deno KV files (config key), when it has storage. */
const DATA_DIR_KEY: Partial<Record<ServiceName, string>> = {
  session: "dataDir",
  statesync: "dataDir",
};
const tools = needs("kubectl");

// deno-lint-ignore no-explicit-any
type Obj = Record<string, any>;

const renders = new Map<string, Promise<Obj[]>>();

/** Render a kustomization directory with the real kubectl (once per directory). */
function render(dir: string): Promise<Obj[]> {
  let rendered = renders.get(dir);
  if (!rendered) {
    rendered = (async () => {
      const output = await new Deno.Command("kubectl", {
        args: ["kustomize", `${K8S}/${dir}`],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stderr = new TextDecoder().decode(output.stderr);
      assert.ok(output.success, `kubectl kustomize ${dir} failed: ${stderr}`);
      const docs = parseAllDocuments(new TextDecoder().decode(output.stdout));
      const objects: Obj[] = [];
      for (const doc of docs) {
        assert.equal(doc.errors.length, 0, `YAML error in ${dir}: ${doc.errors[0]?.message}`);
        const value = doc.toJS();
        if (value !== null) objects.push(value);
      }
      return objects;
    })();
    renders.set(dir, rendered);
  }
  return rendered;
}

function workloads(objects: Obj[]): Obj[] {
  return objects.filter((o) => o.kind === "Deployment" || o.kind === "StatefulSet");
}

function byKind(objects: Obj[], kind: string): Obj[] {
  return objects.filter((o) => o.kind === kind);
}

function named(objects: Obj[], kind: string, name: string): Obj {
  const found = objects.find((o) => o.kind === kind && o.metadata.name === name);
  assert.ok(found, `${kind} ${name} is missing`);
  return found;
}

function matches(selector: Record<string, string> | undefined, labels: Record<string, string>) {
  return Object.entries(selector ?? {}).every(([key, value]) => labels[key] === value);
}

/** The container port a probe/Service/NetworkPolicy port (number or name) refers to. */
function containerPort(
  containers: Obj[],
  port: number | string,
  protocol = "TCP",
): Obj | undefined {
  for (const container of containers) {
    for (const p of container.ports ?? []) {
      const same = typeof port === "number" ? p.containerPort === port : p.name === port;
      if (same && (p.protocol ?? "TCP") === protocol) return p;
    }
  }
  return undefined;
}

/** Environment a container gets from its ConfigMaps (envFrom) and literal `env` values. */
function containerEnv(objects: Obj[], container: Obj): Record<string, string> {
  const env: Record<string, string> = {};
  for (const from of container.envFrom ?? []) {
    if (!from.configMapRef) continue;
    Object.assign(env, named(objects, "ConfigMap", from.configMapRef.name).data ?? {});
  }
  for (const variable of container.env ?? []) {
    if (typeof variable.value === "string") env[variable.name] = variable.value;
    const field = variable.valueFrom?.fieldRef?.fieldPath;
    if (field !== undefined) {
      assert.ok(field in FIELD_STAND_INS, `${variable.name}: no stand-in for ${field}`);
      env[variable.name] = FIELD_STAND_INS[field]!;
    }
  }
  return env;
}

/** Values of the downward-API fields the manifests use, as a running pod would see them. */
const FIELD_STAND_INS: Record<string, string> = { "status.podIP": "10.1.2.3" };

/**
 * Check that every etcd endpoint of a config is the client port of the etcd Service rendered
 * in the same overlay (by its short or namespaced DNS name), and that this Service selects
 * the etcd StatefulSet's pods.
 */
function assertEtcdService(objects: Obj[], endpoints: unknown, where: string): void {
  assert.ok(Array.isArray(endpoints) && endpoints.length > 0, `${where}: no etcd endpoints`);
  const etcd = named(objects, "StatefulSet", "etcd");
  const namespace = etcd.metadata.namespace as string;
  for (const endpoint of endpoints as string[]) {
    const url = new URL(endpoint);
    const [host, ...domain] = url.hostname.split(".");
    const service = objects.find((o) =>
      o.kind === "Service" && o.metadata.name === host && !o.spec.clusterIP
    );
    assert.ok(service, `${where}: ${endpoint} is not an etcd client Service in the overlay`);
    assert.ok(
      domain.length === 0 || domain.join(".").startsWith(`${namespace}.svc`),
      `${where}: ${endpoint} is outside namespace ${namespace}`,
    );
    assert.ok(
      matches(service.spec.selector, etcd.spec.template.metadata.labels),
      `${where}: Service ${host} does not select the etcd pods`,
    );
    const port = service.spec.ports.find((p: Obj) => p.port === Number(url.port));
    const target = port &&
      containerPort(etcd.spec.template.spec.containers, port.targetPort ?? port.port);
    assert.equal(target?.name, "client", `${where}: ${endpoint} is not etcd's client port`);
    assert.equal(url.protocol, "http:", `${where}: etcd serves plain HTTP in the manifests`);
  }
}

/** Secret-sourced variables, with a stand-in value of the strictest usual shape. */
function secretEnv(container: Obj): Record<string, string> {
  const env: Record<string, string> = {};
  for (const variable of container.env ?? []) {
    if (variable.valueFrom?.secretKeyRef) env[variable.name] = "s".repeat(64);
  }
  return env;
}

function get(config: unknown, path: string[]): unknown {
  let node = config;
  for (const key of path) node = (node as Record<string, unknown> | undefined)?.[key];
  return node;
}

for (const overlay of OVERLAYS) {
  Deno.test({
    name: `kubectl kustomize renders the ${overlay} overlay: every workload has probes, ` +
      `requests and limits, and runs as non-root` + tools.note,
    ignore: tools.ignore,
    async fn() {
      const objects = await render(`overlays/${overlay}`);
      const found = workloads(objects);
      assert.deepEqual(
        found.map((w) => w.metadata.name).sort(),
        overlay === "dev"
          ? ["gateway", "session", "statesync"]
          : ["etcd", "gateway", "session", "statesync"],
      );
      for (const workload of found) {
        const where = `${workload.kind} ${workload.metadata.name}`;
        assert.equal(workload.metadata.namespace, `aetherflow-${overlay}`, where);
        const pod = workload.spec.template.spec;
        assert.equal(pod.securityContext?.runAsNonRoot, true, `${where}: runAsNonRoot`);
        assert.ok(pod.securityContext?.runAsUser > 0, `${where}: runAsUser must not be root`);
        for (const container of pod.containers) {
          const at = `${where}/${container.name}`;
          assert.ok(container.readinessProbe, `${at}: readinessProbe`);
          assert.ok(container.livenessProbe, `${at}: livenessProbe`);
          for (const resource of ["cpu", "memory"]) {
            assert.ok(container.resources?.requests?.[resource], `${at}: requests.${resource}`);
            assert.ok(container.resources?.limits?.[resource], `${at}: limits.${resource}`);
          }
          const security = container.securityContext ?? {};
          assert.equal(security.allowPrivilegeEscalation, false, `${at}: privilege escalation`);
          assert.equal(security.readOnlyRootFilesystem, true, `${at}: read-only root`);
          assert.deepEqual(security.capabilities?.drop, ["ALL"], `${at}: capabilities`);
        }
      }
    },
  });

  Deno.test({
    name: `${overlay} overlay: probes, Services, PDBs, the HPA and NetworkPolicies refer to ` +
      `real pods and container ports` + tools.note,
    ignore: tools.ignore,
    async fn() {
      const objects = await render(`overlays/${overlay}`);
      const pods = workloads(objects).map((w) => ({
        name: w.metadata.name as string,
        labels: w.spec.template.metadata.labels as Record<string, string>,
        containers: w.spec.template.spec.containers as Obj[],
        volumes: [
          ...(w.spec.template.spec.volumes ?? []),
          ...(w.spec.volumeClaimTemplates ?? []).map((t: Obj) => ({ name: t.metadata.name })),
        ] as Obj[],
      }));
      for (const pod of pods) {
        for (const container of pod.containers) {
          for (const probe of [container.readinessProbe, container.livenessProbe]) {
            const port = probe.grpc?.port ?? probe.httpGet?.port ?? probe.tcpSocket?.port;
            assert.ok(containerPort([container], port), `${pod.name}: probe port ${port}`);
          }
          // The gRPC services are probed over grpc.health.v1 on their gRPC port, the
          // gateway over HTTP (/health for readiness with dependencies, /ping for liveness).
          if (pod.name === "session" || pod.name === "statesync") {
            const grpc = containerPort([container], "grpc")!.containerPort;
            assert.equal(container.readinessProbe.grpc?.port, grpc, `${pod.name} readiness`);
            assert.equal(container.livenessProbe.grpc?.port, grpc, `${pod.name} liveness`);
          }
          if (pod.name === "gateway") {
            assert.equal(container.readinessProbe.httpGet?.path, "/health");
            assert.equal(container.livenessProbe.httpGet?.path, "/ping");
          }
          for (const mount of container.volumeMounts ?? []) {
            assert.ok(pod.volumes.some((v) => v.name === mount.name), `${pod.name}: volume`);
          }
        }
        // Every Secret a pod uses exists in the render, or is a documented external one.
        const secretNames = [
          ...pod.volumes.flatMap((v) => v.secret ? [v.secret.secretName] : []),
          ...pod.containers.flatMap((c) =>
            (c.env ?? []).flatMap((e: Obj) =>
              e.valueFrom?.secretKeyRef ? [e.valueFrom.secretKeyRef.name] : []
            )
          ),
        ];
        for (const secret of secretNames) {
          const inRender = objects.some((o) => o.kind === "Secret" && o.metadata.name === secret);
          if (overlay === "dev") assert.ok(inRender, `dev must generate Secret ${secret}`);
          else assert.ok(inRender || EXTERNAL_SECRETS.has(secret), `unknown Secret ${secret}`);
        }
        for (const volume of pod.volumes) {
          if (!volume.persistentVolumeClaim) continue;
          named(objects, "PersistentVolumeClaim", volume.persistentVolumeClaim.claimName);
        }
      }
      for (const service of byKind(objects, "Service")) {
        const selected = pods.filter((p) => matches(service.spec.selector, p.labels));
        assert.equal(selected.length, 1, `Service ${service.metadata.name} selects one workload`);
        for (const port of service.spec.ports) {
          const target = port.targetPort ?? port.port;
          const found = containerPort(selected[0]!.containers, target, port.protocol ?? "TCP");
          assert.ok(found, `Service ${service.metadata.name} port ${port.name} has no target`);
          if (typeof target === "string") assert.equal(found.containerPort, port.port);
        }
      }
      for (const pdb of byKind(objects, "PodDisruptionBudget")) {
        const selected = pods.filter((p) => matches(pdb.spec.selector.matchLabels, p.labels));
        assert.equal(selected.length, 1, `PDB ${pdb.metadata.name} selects one workload`);
      }
      const hpa = named(objects, "HorizontalPodAutoscaler", "gateway");
      named(objects, hpa.spec.scaleTargetRef.kind, hpa.spec.scaleTargetRef.name);
      assert.ok(hpa.spec.minReplicas <= hpa.spec.maxReplicas);
      const metricTypes = hpa.spec.metrics.map((m: Obj) => m.type).sort();
      assert.deepEqual(metricTypes, ["Pods", "Resource"], "HPA scales on CPU and a pod metric");

      // NetworkPolicies: each allowed port is one the selected pods listen on (TCP or UDP),
      // and each flow the system needs is allowed at both ends.
      const policies = byKind(objects, "NetworkPolicy");
      for (const policy of policies) {
        const selected = pods.filter((p) => matches(policy.spec.podSelector.matchLabels, p.labels));
        for (const rule of policy.spec.ingress ?? []) {
          for (const port of rule.ports ?? []) {
            for (const pod of selected) {
              assert.ok(
                containerPort(pod.containers, port.port, port.protocol),
                `NetworkPolicy ${policy.metadata.name}: ${pod.name} has no ${port.protocol} ${port.port}`,
              );
            }
          }
        }
      }
      const allows = (direction: "ingress" | "egress", from: string, to: string, port: Obj) => {
        const self = direction === "ingress" ? to : from;
        const peer = direction === "ingress" ? from : to;
        const selfLabels = pods.find((p) => p.name === self)?.labels ?? {};
        return policies.some((policy) =>
          matches(policy.spec.podSelector.matchLabels, selfLabels) &&
          (policy.spec[direction] ?? []).some((rule: Obj) =>
            (rule[direction === "ingress" ? "from" : "to"] ?? []).some((peerSel: Obj) =>
              !peerSel.namespaceSelector &&
              peerSel.podSelector?.matchLabels?.["app.kubernetes.io/name"] === peer
            ) &&
            (rule.ports ?? []).some((p: Obj) =>
              p.port === port.containerPort && (p.protocol ?? "TCP") === (port.protocol ?? "TCP")
            )
          )
        );
      };
      // Prometheus scrapes every annotated pod on its annotated port, and may.
      for (const workload of workloads(objects)) {
        const annotations = workload.spec.template.metadata.annotations ?? {};
        if (workload.metadata.name !== "etcd") {
          assert.equal(annotations["prometheus.io/scrape"], "true", workload.metadata.name);
        }
        if (annotations["prometheus.io/scrape"] !== "true") continue;
        const port = Number(annotations["prometheus.io/port"]);
        const pod = pods.find((p) => p.name === workload.metadata.name)!;
        assert.ok(containerPort(pod.containers, port), `${pod.name}: scrape port ${port}`);
        const scrapable = policies.some((policy) =>
          matches(policy.spec.podSelector.matchLabels, pod.labels) &&
          (policy.spec.ingress ?? []).some((rule: Obj) =>
            (rule.from ?? []).some((peer: Obj) =>
              peer.namespaceSelector?.matchLabels?.["kubernetes.io/metadata.name"] ===
                "monitoring" &&
              peer.podSelector?.matchLabels?.["app.kubernetes.io/name"] === "prometheus"
            ) && (rule.ports ?? []).some((p: Obj) => p.port === port)
          )
        );
        assert.ok(scrapable, `${pod.name}: Prometheus may not scrape port ${port}`);
      }
      const defaultDeny = policies.find((p) =>
        Object.keys(p.spec.podSelector).length === 0 && !p.spec.ingress && !p.spec.egress
      );
      assert.deepEqual(defaultDeny?.spec.policyTypes, ["Ingress", "Egress"], "default deny");
      const flows: [string, string][] = [["gateway", "session"], ["gateway", "statesync"]];
      if (pods.some((p) => p.name === "etcd")) {
        flows.push(["session", "etcd"], ["statesync", "etcd"], ["gateway", "etcd"]);
      }
      for (const [from, to] of flows) {
        const target = pods.find((p) => p.name === to)!;
        // The service ports proper: gRPC (TCP), Quantum (UDP), etcd's client port.
        const ports = target.containers.flatMap((c) => c.ports ?? []).filter((p: Obj) =>
          ["grpc", "quantum", "client"].includes(p.name)
        );
        for (const port of ports) {
          assert.ok(allows("egress", from, to, port), `${from} -> ${to} ${port.name} egress`);
          assert.ok(allows("ingress", from, to, port), `${from} -> ${to} ${port.name} ingress`);
        }
      }
      assert.ok(!allows("ingress", "gateway", "gateway", { containerPort: 8080 }));
      assert.ok(!allows("ingress", "statesync", "session", { containerPort: 50051 }));
    },
  });

  for (const { name } of SERVICES) {
    const schema = await configSchema(name);
    const missing = schema ? "" : ` [NOT RUN: ${name} exports no config schema yet]`;
    Deno.test({
      name: `${overlay} overlay: every ${name} config key loads through ${name}'s config ` +
        `schema and its ports match the manifests` + (tools.note || missing),
      ignore: tools.ignore || schema === undefined,
      async fn() {
        const objects = await render(`overlays/${overlay}`);
        const workload = workloads(objects).find((w) => w.metadata.name === name)!;
        const container = workload.spec.template.spec.containers[0];
        const env = { ...containerEnv(objects, container), ...secretEnv(container) };
        for (const key of Object.keys(env)) {
          assert.ok(key.startsWith(envPrefix(name)), `${key} is not a ${name} setting`);
        }
        const config = await loadConfig(schema!, { service: name, env });
        for (const [portName, path] of Object.entries(PORT_KEYS[name])) {
          const protocol = portName === "quantum" ? "UDP" : "TCP";
          const port = containerPort([container], portName, protocol);
          assert.ok(port, `${name} has no ${protocol} container port ${portName}`);
          // Quantum may be off (port 0): its UDP port stays reserved in the manifests.
          const configured = get(config, path);
          if (!(portName === "quantum" && configured === 0)) {
            assert.equal(configured, port.containerPort, `${name} ${path.join(".")}`);
          }
          const service = named(objects, "Service", name);
          assert.ok(
            service.spec.ports.some((p: Obj) => p.port === port.containerPort),
            `Service ${name} exposes ${portName} on the configured port`,
          );
        }
        const dataDirKey = DATA_DIR_KEY[name];
        if (dataDirKey) {
          // Deno KV is one writer per file: kv storage means one replica, replaced (not
          // rolled), with the data directory on a persistent volume.
          const storage = get(config, ["storage"]);
          assert.ok(storage === "kv" || storage === "etcd", `${name}: storage ${storage}`);
          if (storage === "kv") {
            assert.equal(workload.spec.replicas, 1, `${name}: kv storage allows one replica`);
            assert.equal(workload.spec.strategy?.type, "Recreate", `${name}: strategy`);
            const dataDir = get(config, [dataDirKey]);
            const mount = container.volumeMounts.find((m: Obj) => m.mountPath === dataDir);
            assert.ok(mount, `${name}: ${dataDirKey} ${dataDir} is not on a volume`);
            const volume = workload.spec.template.spec.volumes.find((v: Obj) =>
              v.name === mount.name
            );
            assert.ok(volume?.persistentVolumeClaim, `${name}: KV data must be persistent`);
          } else {
            // etcd storage: several instances share etcd through its client Service, with no
            // KV volume, and each registers its pod IP (not a wildcard) for discovery.
            assert.ok(workload.spec.replicas > 1, `${name}: etcd storage should scale out`);
            assertEtcdService(objects, get(config, ["etcd", "endpoints"]), name);
            const volumes: Obj[] = workload.spec.template.spec.volumes ?? [];
            assert.ok(!volumes.some((v) => v.persistentVolumeClaim), `${name}: KV volume left`);
            const hostVariable = (container.env ?? []).find((v: Obj) =>
              v.name === `${envPrefix(name)}HOST`
            );
            assert.equal(
              hostVariable?.valueFrom?.fieldRef?.fieldPath,
              "status.podIP",
              `${name}: the registered host must be the pod IP`,
            );
          }
        }
        if (name === "gateway") {
          // Backends on etcd storage are found through etcd, in the same etcd and prefix.
          const discovery = get(config, ["discovery"]) as {
            enabled: boolean;
            etcd: { endpoints: string[]; prefix: string };
          };
          for (const backend of ["session", "statesync"] as const) {
            const backendConfig = await manifestConfig(objects, backend);
            if (get(backendConfig, ["storage"]) !== "etcd") continue;
            assert.ok(discovery.enabled, `gateway must discover the ${backend} instances`);
            assert.equal(get(backendConfig, ["etcd", "prefix"]), discovery.etcd.prefix, backend);
            assert.deepEqual(get(backendConfig, ["etcd", "endpoints"]), discovery.etcd.endpoints);
          }
          if (discovery.enabled) {
            assertEtcdService(objects, discovery.etcd.endpoints, "gateway discovery");
          }
          // The gateway reaches each backend at its Service's port for the chosen transport.
          for (const backend of ["session", "statesync"]) {
            const settings = get(config, [backend]) as { address: string; transport: string };
            const service = named(objects, "Service", backend);
            const portName = settings.transport === "quantum" ? "quantum" : "grpc";
            const port = service.spec.ports.find((p: Obj) => p.name === portName);
            assert.equal(settings.address, `${backend}:${port.port}`, `${backend} address`);
            if (settings.transport === "quantum") {
              const backendConfig = await manifestConfig(objects, backend as ServiceName);
              assert.notEqual(get(backendConfig, ["quantumPort"]), 0, `${backend} Quantum is off`);
            }
          }
        }
      },
    });
  }
}

/** A service's config as the overlay's manifests configure it. */
async function manifestConfig(objects: Obj[], name: ServiceName): Promise<unknown> {
  const schema = await configSchema(name);
  assert.ok(schema, `${name} has no config schema`);
  const workload = workloads(objects).find((w) => w.metadata.name === name)!;
  const container = workload.spec.template.spec.containers[0];
  const env = { ...containerEnv(objects, container), ...secretEnv(container) };
  return await loadConfig(schema, { service: name, env });
}

for (const overlay of OVERLAYS) {
  Deno.test({
    name: `${overlay} overlay: sessions created at login may live as long as the gateway's ` +
      `refresh tokens` + tools.note,
    ignore: tools.ignore,
    async fn() {
      const objects = await render(`overlays/${overlay}`);
      const gateway = await manifestConfig(objects, "gateway");
      const session = await manifestConfig(objects, "session");
      const refresh = get(gateway, ["auth", "refreshTtlSeconds"]) as number;
      const max = get(session, ["maxTtlSeconds"]) as number;
      assert.ok(refresh <= max, `gateway refresh TTL ${refresh}s > session maxTtlSeconds ${max}s`);
    },
  });
}

Deno.test({
  name: "etcd StatefulSet: persistent volumes and one ETCD_INITIAL_CLUSTER member per " +
    "replica (3 in prod)" + tools.note,
  ignore: tools.ignore,
  async fn() {
    for (const overlay of ["staging", "prod"] satisfies Overlay[]) {
      const etcd = named(await render(`overlays/${overlay}`), "StatefulSet", "etcd");
      const env = etcd.spec.template.spec.containers[0].env as Obj[];
      const cluster = env.find((e) => e.name === "ETCD_INITIAL_CLUSTER")!.value as string;
      const members = cluster.split(",").map((m) => m.split("=")[0]);
      const expected = Array.from({ length: etcd.spec.replicas }, (_, i) => `etcd-${i}`);
      assert.deepEqual(members, expected, `${overlay} etcd members`);
      assert.equal(etcd.spec.volumeClaimTemplates[0].metadata.name, "data");
      const mounts = etcd.spec.template.spec.containers[0].volumeMounts as Obj[];
      assert.ok(mounts.some((m) => m.name === "data"));
      if (overlay === "prod") assert.equal(etcd.spec.replicas, 3);
    }
  },
});

Deno.test({
  name: "the prometheus-adapter rule exposes the metric the gateway HPA scales on" + tools.note,
  ignore: tools.ignore,
  async fn() {
    const [adapter] = await render("prometheus-adapter");
    const rules = parseAllDocuments(adapter!.data["config.yaml"])[0]!.toJS().rules as Obj[];
    const exposed = rules.map((rule) => rule.name.as);
    for (const overlay of OVERLAYS) {
      const hpa = named(await render(`overlays/${overlay}`), "HorizontalPodAutoscaler", "gateway");
      const podMetric = hpa.spec.metrics.find((m: Obj) => m.type === "Pods");
      assert.ok(exposed.includes(podMetric.pods.metric.name), `${overlay}: adapter rule`);
    }
  },
});

// ---- deploy/Dockerfile and .dockerignore ----

interface Instruction {
  readonly stage: number;
  readonly op: string;
  readonly args: string;
}

async function dockerfile(): Promise<Instruction[]> {
  const text = await Deno.readTextFile(`${ROOT}deploy/Dockerfile`);
  const joined = text.split("\n").filter((line) => !line.trimStart().startsWith("#"))
    .join("\n").replace(/\\\n/g, " ");
  const instructions: Instruction[] = [];
  let stage = -1;
  for (const line of joined.split("\n")) {
    const match = /^\s*([A-Za-z]+)\s+(.*)$/.exec(line);
    if (!match) continue;
    const op = match[1]!.toUpperCase();
    if (op === "FROM") stage++;
    instructions.push({ stage, op, args: match[2]!.trim() });
  }
  return instructions;
}

/** Whether .dockerignore excludes a context path (Docker's rules: last match wins). */
function dockerIgnored(patterns: string[], path: string): boolean {
  let ignored = false;
  for (const raw of patterns) {
    const negate = raw.startsWith("!");
    const pattern = (negate ? raw.slice(1) : raw).replace(/\/$/, "");
    const regex = new RegExp(
      "^" + pattern.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*\*\//g, "(.*/)?")
        .replace(/\*\*/g, ".*").replace(/\*/g, "[^/]*").replace(/\?/g, "[^/]") +
        "(/.*)?$",
    );
    if (regex.test(path)) ignored = !negate;
  }
  return ignored;
}

function copies(instructions: Instruction[]) {
  return instructions.filter((i) => i.op === "COPY").map((i) => {
    const words = i.args.split(/\s+/);
    const flags = words.filter((w) => w.startsWith("--"));
    const paths = words.filter((w) => !w.startsWith("--"));
    const from = flags.find((f) => f.startsWith("--from="))?.slice("--from=".length);
    return { stage: i.stage, from, sources: paths.slice(0, -1), dest: paths.at(-1)! };
  });
}

function execForm(args: string): string[] {
  const json = args.replace(/^CMD\s+/, "");
  return JSON.parse(json);
}

Deno.test("deploy/Dockerfile copies only existing, non-ignored paths and builds with the deno.json compile task and the pinned Deno", async () => {
  const instructions = await dockerfile();
  const ignore = (await Deno.readTextFile(`${ROOT}.dockerignore`)).split("\n")
    .map((line) => line.trim()).filter((line) => line && !line.startsWith("#"));
  const contextCopies = copies(instructions).filter((c) => c.from === undefined);
  assert.ok(contextCopies.length > 0);
  for (const copy of contextCopies) {
    for (const source of copy.sources) {
      const path = source.replace(/\/$/, "");
      await Deno.stat(`${ROOT}${path}`).catch(() => assert.fail(`COPY ${source}: no such path`));
      assert.ok(!dockerIgnored(ignore, path), `COPY ${source} is excluded by .dockerignore`);
    }
  }
  // Everything the build needs reaches the build stage: each target's entrypoint folder,
  // and the modules the build script itself imports.
  // Where each copied context path lands relative to WORKDIR (a file copied into a folder
  // keeps its base name; a folder copies its contents).
  const copied = contextCopies.flatMap((c) =>
    c.sources.map((source) => {
      const dest = c.dest.replace(/^\.\//, "");
      if (source.endsWith("/") || !c.dest.endsWith("/")) return dest;
      return `${dest}${source.slice(source.lastIndexOf("/") + 1)}`;
    })
  );
  const inContext = (file: string) =>
    copied.some((c) => c === file || (c.endsWith("/") && file.startsWith(c))) &&
    !dockerIgnored(ignore, file);
  for (const target of TARGETS.filter((t) => exists(t.entry))) {
    assert.ok(inContext(target.entry), `${target.entry} not copied`);
  }
  for (const file of ["deploy/build.ts", "deploy/services.ts", "deno.json", "deno.lock"]) {
    assert.ok(inContext(file), `${file} not copied`);
  }
  assert.ok(dockerIgnored(ignore, "tests/deploy_test.ts") && dockerIgnored(ignore, ".git/HEAD"));
  assert.ok(dockerIgnored(ignore, "session/manager_test.ts") && dockerIgnored(ignore, "dist/x"));

  const denoJson = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`));
  const ciRun = await Deno.readTextFile(`${ROOT}.ci/run`);
  const pinned = /deno@(\d+\.\d+\.\d+)/.exec(ciRun)?.[1];
  assert.ok(pinned, ".ci/run pins a Deno version");
  const runs = instructions.filter((i) => i.op === "RUN");
  const taskRuns = runs.flatMap((r) => [...r.args.matchAll(/deno@(\S+) task (\S+)/g)]);
  assert.ok(taskRuns.some((m) => m[2] === "compile"), "the build runs deno task compile");
  for (const [, version, task] of taskRuns) {
    assert.equal(version, pinned, "Dockerfile and CI use the same Deno");
    assert.ok(denoJson.tasks[task!], `deno task ${task} does not exist`);
  }
  assert.match(denoJson.tasks.compile, /deploy\/build\.ts compile/);
  assert.match(denoJson.tasks.bundle, /deploy\/build\.ts bundle/);

  const runtime = Math.max(...instructions.map((i) => i.stage));
  const user = instructions.filter((i) => i.stage === runtime && i.op === "USER").at(-1);
  assert.ok(user && !/^(0|root)(:|$)/.test(user.args), "the runtime stage runs as non-root");
  assert.ok(instructions.some((i) => i.stage === runtime && i.op === "HEALTHCHECK"));
});

Deno.test("the image ships exactly the binaries deploy/build.ts compiles, and its CMD, HEALTHCHECK and the Kubernetes commands run them", async () => {
  const instructions = await dockerfile();
  const shipped = copies(instructions).filter((c) =>
    c.from === "build" && c.dest.startsWith("/app/")
  );
  const fromDist = shipped.map((c) => c.sources[0]!.replace("/src/dist/", ""));
  assert.deepEqual(fromDist.sort(), TARGETS.map((t) => t.binary).sort());
  const binaries = new Set(shipped.map((c) => c.dest));
  const cmd = instructions.filter((i) => i.op === "CMD").at(-1)!;
  assert.ok(binaries.has(execForm(cmd.args)[0]!), `CMD ${cmd.args}`);
  const health = instructions.find((i) => i.op === "HEALTHCHECK")!;
  const healthCmd = execForm(health.args.replace(/^(--\S+\s+)*/, ""));
  assert.equal(healthCmd[0], `/app/${HEALTHCHECK.binary}`);
  const exposed = instructions.filter((i) => i.op === "EXPOSE").flatMap((i) => i.args.split(/\s+/));
  if (!tools.ignore) {
    const objects = await render("overlays/prod");
    for (const workload of workloads(objects).filter((w) => w.metadata.name !== "etcd")) {
      const container = workload.spec.template.spec.containers[0];
      assert.ok(binaries.has(container.command[0]), `${workload.metadata.name} command`);
      for (const port of container.ports) {
        const spec = `${port.containerPort}/${(port.protocol ?? "TCP").toLowerCase()}`;
        assert.ok(exposed.includes(spec), `EXPOSE ${spec}`);
      }
    }
  }
});

Deno.test("Dockerfile ENV settings load through the services' config schemas", async () => {
  const instructions = await dockerfile();
  const env: Record<string, string> = {};
  for (const i of instructions.filter((i) => i.op === "ENV")) {
    for (const match of i.args.matchAll(/(\w+)=(\S+)/g)) env[match[1]!] = match[2]!;
  }
  for (const key of Object.keys(env)) {
    assert.ok(
      key === "HEALTHCHECK_TARGET" || key === "DENO_DIR" ||
        SERVICES.some((s) => key.startsWith(envPrefix(s.name))),
      `ENV ${key} is read by nothing`,
    );
  }
  for (const { name } of SERVICES) {
    const schema = await configSchema(name);
    if (!schema) continue;
    const own = Object.fromEntries(
      Object.entries(env).filter(([k]) => k.startsWith(envPrefix(name))),
    );
    await loadConfig(schema, { service: name, env: own });
  }
});

function exists(path: string): boolean {
  try {
    Deno.statSync(`${ROOT}${path}`);
    return true;
  } catch {
    return false;
  }
}

for (const target of TARGETS) {
  const present = exists(target.entry);
  Deno.test({
    name: `build entrypoint ${target.entry} exists` +
      (present ? "" : ` [NOT RUN: ${target.entry} is not in the tree yet]`),
    ignore: !present,
    fn() {
      assert.ok(Deno.statSync(`${ROOT}${target.entry}`).isFile);
    },
  });
}

// ---- configuration reference (deploy/README.md) ----

Deno.test("deploy/README.md's configuration reference is what deno task config:docs generates from the schemas", async () => {
  const readme = await Deno.readTextFile(README_PATH);
  const rendered = await renderReadme(readme);
  assert.ok(rendered === readme, "deploy/README.md is stale: run `deno task config:docs`");
  assert.equal(new URL(README_PATH, "file:").pathname, `${ROOT}deploy/README.md`);
});

Deno.test("every documented environment override sets its key through the config loader", async () => {
  let alone = 0;
  for (const { name } of SERVICES) {
    const schema = await configSchema(name);
    if (!schema) continue;
    const rows = await configRows(name);
    const envText = (row: ConfigRow) => {
      const value: unknown = JSON.parse(row.defaultValue);
      return typeof value === "string" ? value : JSON.stringify(value);
    };
    for (const row of rows) {
      if (row.defaultValue === "(unset)") continue;
      // Keys documented as needing others get them (at their defaults); others go alone.
      const group = [row, ...rows.filter((r) => row.requires?.includes(r.key))];
      const env = Object.fromEntries(group.map((r) => [r.env, envText(r)]));
      const config: unknown = await loadConfig(schema, { service: name, env });
      assert.deepEqual(get(config, row.key.split(".")), JSON.parse(row.defaultValue), row.env);
      if (row.requires === undefined) alone++;
      else {
        // The note is needed: alone, the override is refused.
        await assert.rejects(
          loadConfig(schema, { service: name, env: { [row.env]: envText(row) } }),
          ConfigError,
          `${row.env} is documented as needing other keys but loads alone`,
        );
      }
    }
  }
  assert.ok(alone > 0);
});

Deno.test("every local module the build targets import (code, wasm, text imports) reaches the Docker build stage", async () => {
  const instructions = await dockerfile();
  const ignore = (await Deno.readTextFile(`${ROOT}.dockerignore`)).split("\n")
    .map((line) => line.trim()).filter((line) => line && !line.startsWith("#"));
  const copied = copies(instructions).filter((c) => c.from === undefined).flatMap((c) =>
    c.sources.map((source) => {
      const dest = c.dest.replace(/^\.\//, "");
      if (source.endsWith("/") || !c.dest.endsWith("/")) return dest;
      return `${dest}${source.slice(source.lastIndexOf("/") + 1)}`;
    })
  );
  let checked = 0;
  for (const target of TARGETS.filter((t) => exists(t.entry))) {
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json", target.entry],
      cwd: ROOT,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.ok(output.success, new TextDecoder().decode(output.stderr));
    const info = JSON.parse(new TextDecoder().decode(output.stdout)) as { modules: Obj[] };
    for (const module of info.modules) {
      const specifier = module.specifier as string;
      if (!specifier.startsWith("file://")) continue;
      const file = fileURLToPath(specifier).slice(ROOT.length);
      const reached = copied.some((c) => c === file || (c.endsWith("/") && file.startsWith(c)));
      assert.ok(reached && !dockerIgnored(ignore, file), `${target.name} needs ${file}`);
      checked++;
    }
  }
  assert.ok(checked > 0);
});

// ---- schema validation of every rendered object (kubernetes-models, from the OpenAPI spec) ----

/** Validators for every kind the manifests use, keyed by `apiVersion/kind`. */
const VALIDATORS: Record<string, (object: Obj) => void> = {
  "apps/v1/Deployment": (o) => new Deployment(o as never).validate(),
  "apps/v1/StatefulSet": (o) => new StatefulSet(o as never).validate(),
  "v1/Service": (o) => new Service(o as never).validate(),
  "v1/ConfigMap": (o) => new ConfigMap(o as never).validate(),
  // Newer kustomize wraps long base64 values over several lines; the API server's decoder
  // (Go's encoding/base64) skips the newlines, so the check does too.
  "v1/Secret": (o) =>
    new Secret({
      ...o,
      data: Object.fromEntries(
        Object.entries(o.data ?? {}).map(([k, v]) => [k, String(v).replace(/\s+/g, "")]),
      ),
    } as never).validate(),
  "v1/Namespace": (o) => new Namespace(o as never).validate(),
  "v1/PersistentVolumeClaim": (o) => new PersistentVolumeClaim(o as never).validate(),
  "networking.k8s.io/v1/Ingress": (o) => new Ingress(o as never).validate(),
  "networking.k8s.io/v1/NetworkPolicy": (o) => new NetworkPolicy(o as never).validate(),
  "policy/v1/PodDisruptionBudget": (o) => new PodDisruptionBudget(o as never).validate(),
  "autoscaling/v2/HorizontalPodAutoscaler": (o) =>
    new HorizontalPodAutoscaler(o as never).validate(),
};

Deno.test({
  name: "every rendered object of every overlay is valid against the Kubernetes API schema" +
    tools.note,
  ignore: tools.ignore,
  async fn() {
    for (const dir of [...OVERLAYS.map((o) => `overlays/${o}`), "prometheus-adapter"]) {
      for (const object of await render(dir)) {
        const key = `${object.apiVersion}/${object.kind}`;
        const validate = VALIDATORS[key];
        assert.ok(validate, `${dir}: no schema for ${key}`);
        try {
          validate(object);
        } catch (error) {
          assert.fail(`${dir}: ${key} ${object.metadata.name}: ${(error as Error).message}`);
        }
      }
    }
  },
});

Deno.test("the schema validation rejects a malformed object (so the check above can fail)", () => {
  const deployment = {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name: "x" },
    spec: {
      selector: { matchLabels: { a: "b" } },
      template: {
        metadata: { labels: { a: "b" } },
        spec: { containers: [{ name: "c", image: "i", readinessProbe: { grpc: { port: "x" } } }] },
      },
    },
  };
  assert.throws(() => VALIDATORS["apps/v1/Deployment"]!(deployment));
  deployment.spec.template.spec.containers[0]!.readinessProbe.grpc.port = 50051 as never;
  VALIDATORS["apps/v1/Deployment"]!(deployment);
});
