#!/usr/bin/env node
// check.js - offline checks of the rendered Kubernetes manifests.
//
//   node check.js schema FILE
//     every object in FILE validates against the Kubernetes schema of its
//     apiVersion/kind (npm's kubernetes-models) and has no field its type
//     does not declare; an object of a kind it has no schema for fails.
//   node check.js kustomization K8SDIR
//     every kustomization.yaml under K8SDIR uses only what the kustomize
//     embedded in Debian 12's kubectl (1.20, kustomize v2.0.3) reads, so
//     a newer kubectl rendering them here proves nothing the other could
//     not render.
//   node check.js policy FILE dev|prod SRCDIR
//     the rules every pod must follow, checked on every workload found
//     (not on a list of names), and what each environment must have; the
//     services' dependencies come from the configuration tables in the C
//     sources under SRCDIR, so NetworkPolicies are checked against what
//     the code really calls.
//
// Prints every problem found, then "N passed, N failed"; exits 1 on any.
"use strict";

const fs = require("fs");
const path = require("path");
const YAML = require("yaml");

function readObjects(file) {
  const docs = YAML.parseAllDocuments(fs.readFileSync(file, "utf8"));
  const objs = [];
  for (const d of docs) {
    if (d.errors.length) throw new Error(`${file}: ${d.errors[0].message}`);
    const o = d.toJS();
    if (o !== null) objs.push(o);
  }
  if (objs.length === 0) throw new Error(`${file}: no objects`);
  return objs;
}

const id = (o) => `${o.kind}/${o.metadata && o.metadata.name}`;

// ---- schema ------------------------------------------------------------

function schema(file) {
  const problems = [];
  const objs = readObjects(file);
  for (const o of objs) {
    if (typeof o.apiVersion !== "string" || typeof o.kind !== "string" ||
        !/^[A-Za-z0-9.\/-]+$/.test(o.apiVersion) || !/^[A-Za-z]+$/.test(o.kind)) {
      problems.push(`${id(o)}: no valid apiVersion/kind`);
      continue;
    }
    let Model;
    try {
      Model = require(`kubernetes-models/${o.apiVersion}/${o.kind}`)[o.kind];
    } catch (e) {
      problems.push(`${id(o)}: no schema for ${o.apiVersion} ${o.kind}`);
      continue;
    }
    // Newer kustomize wraps long base64 values over lines; the API server
    // decodes them with line breaks ignored, the schema's "byte" format
    // does not.
    if (o.kind === "Secret" && o.data)
      for (const k of Object.keys(o.data))
        if (typeof o.data[k] === "string") o.data[k] = o.data[k].replace(/[\r\n]/g, "");
    try {
      new Model(o).validate();
    } catch (e) {
      problems.push(`${id(o)}: ${e.message}`);
    }
    const dts = path.join(__dirname, "node_modules", "kubernetes-models", o.apiVersion, `${o.kind}.d.ts`);
    if (!typeInfo(dts)) problems.push(`${id(o)}: no field list for ${o.apiVersion} ${o.kind}`);
    else unknownFields(o, { file: dts }, id(o), problems);
  }
  return { checked: objs.length, problems };
}

// The schemas accept fields they do not know (a misspelt
// "readOnlyRootFilesytem" would pass), while kubectl apply validates
// strictly. The field names of each type come from the type declarations
// (.d.ts) kubernetes-models ships next to its schemas.
const typeCache = new Map();

// A type as written in a .d.ts: "IIoK8s...", "Array<T>", "{ [key: string]: T }",
// or an object literal (possibly in an array) written inline.
function parseType(t, imports) {
  const arr = /^Array<(.+)>$/.exec(t);
  if (arr) return { array: parseType(arr[1], imports) };
  if (imports[t]) return { file: imports[t] };
  return null; // a scalar, a union of literals, IntOrString...: no fields
}

// The properties declared at `indent` from lines[i] on, up to the line
// that closes the block.
function parseProps(lines, i, indent, imports) {
  const props = {};
  const pad = " ".repeat(indent);
  const prop = new RegExp(`^${pad}"([^"]+)"\\??: (.*)$`);
  for (; i < lines.length; i++) {
    if (lines[i].startsWith(pad.slice(4) + "}")) break;
    const m = prop.exec(lines[i]);
    if (!m) continue;
    const rest = m[2];
    if (rest === "{" || rest === "Array<{") {
      const close = rest === "{" ? `${pad}};` : `${pad}}>;`;
      let j = i + 1;
      while (j < lines.length && lines[j] !== close) j++;
      const inner = lines.slice(i + 1, j);
      const map = inner.map((l) => /^\s*\[key: string\]: (.+);$/.exec(l)).find(Boolean);
      let type;
      if (map) type = { map: parseType(map[1], imports) };
      else type = { props: parseProps(inner, 0, indent + 4, imports).props };
      props[m[1]] = rest === "{" ? type : { array: type };
      i = j;
    } else props[m[1]] = parseType(rest.replace(/;$/, ""), imports);
  }
  return { props };
}

function typeInfo(file) {
  if (typeCache.has(file)) return typeCache.get(file);
  let info = null;
  if (fs.existsSync(file)) {
    const text = fs.readFileSync(file, "utf8");
    const imports = {};
    for (const m of text.matchAll(/^import \{ (\w+) \} from "([^"]+)";$/gm))
      imports[m[1]] = m[2].startsWith(".")
        ? path.resolve(path.dirname(file), `${m[2]}.d.ts`)
        : path.join(__dirname, "node_modules", `${m[2]}.d.ts`);
    const body = /^export interface \w+(?: extends [\w, ]+)? \{\n([\s\S]*?)^\}/m.exec(text);
    if (body) info = parseProps(body[1].split("\n"), 0, 4, imports);
  }
  typeCache.set(file, info);
  return info;
}

function unknownFields(value, type, where, out) {
  if (!type || value === null || value === undefined) return;
  if (type.array) {
    if (Array.isArray(value)) value.forEach((e, i) => unknownFields(e, type.array, `${where}[${i}]`, out));
    return;
  }
  if (typeof value !== "object" || Array.isArray(value)) return;
  if (type.map) {
    for (const [k, v] of Object.entries(value)) unknownFields(v, type.map, `${where}.${k}`, out);
    return;
  }
  const props = type.props || (typeInfo(type.file) || {}).props;
  if (!props) return;
  for (const [k, v] of Object.entries(value)) {
    if (!(k in props)) out.push(`${where}: unknown field "${k}"`);
    else unknownFields(v, props[k], `${where}.${k}`, out);
  }
}

// ---- kustomization.yaml ------------------------------------------------

// Fields kubectl 1.20 accepts (it rejects unknown ones: "replicas",
// "labels", "components", "envs", generator "options"... came later).
const KUSTOMIZE_FIELDS = new Set(["apiVersion", "kind", "namePrefix", "nameSuffix",
  "namespace", "commonLabels", "commonAnnotations", "patchesStrategicMerge",
  "patchesJson6902", "crds", "resources", "bases", "configMapGenerator",
  "secretGenerator", "generatorOptions", "vars", "images", "configurations"]);
const GENERATOR_FIELDS = new Set(["name", "namespace", "behavior", "env", "files", "literals", "type"]);

function kustomizations(dir) {
  const problems = [];
  let checked = 0;
  const walk = (d) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name === "kustomization.yaml" || e.name === "kustomization.yml" || e.name === "Kustomization") {
        checked++;
        const k = YAML.parse(fs.readFileSync(p, "utf8")) || {};
        const rel = path.relative(dir, p);
        for (const key of Object.keys(k))
          if (!KUSTOMIZE_FIELDS.has(key)) problems.push(`${rel}: "${key}" is newer than kubectl 1.20's kustomize`);
        for (const gen of ["configMapGenerator", "secretGenerator"])
          for (const g of k[gen] || [])
            for (const key of Object.keys(g))
              if (!GENERATOR_FIELDS.has(key)) problems.push(`${rel}: ${gen} "${key}" is newer than kubectl 1.20's kustomize`);
        // Folders go in "bases" there; "resources" takes files only.
        for (const r of k.resources || [])
          if (fs.existsSync(path.join(d, r)) && fs.statSync(path.join(d, r)).isDirectory())
            problems.push(`${rel}: resource ${r} is a folder; kubectl 1.20 wants it under "bases"`);
      }
    }
  };
  walk(dir);
  if (checked === 0) problems.push(`${dir}: no kustomization.yaml`);
  return { checked, problems };
}

// ---- what the code reads -----------------------------------------------

// { "estore-account": { vars: {NAME: {required, secret}} }, ... } from the
// cfg_var tables of services/<name>/main.c and edge-proxy/main.c.
function codeConfig(src) {
  const mains = [];
  const svcDir = path.join(src, "services");
  for (const d of fs.readdirSync(svcDir)) {
    const f = path.join(svcDir, d, "main.c");
    if (fs.existsSync(f)) mains.push([`estore-${d}`, f]);
  }
  mains.push(["estore-edge", path.join(src, "edge-proxy", "main.c")]);
  const out = {};
  const entry = /\{\s*"([A-Z][A-Z0-9_]*)",\s*CFG_\w+,\s*F\(\w+\),\s*(NULL|"(?:[^"\\]|\\.)*"|\w+),\s*[^,]+,\s*[^,]+,\s*(true|false)\s*,/g;
  for (const [bin, f] of mains) {
    const text = fs.readFileSync(f, "utf8");
    const table = /cfg_var\s+\w+\[\]\s*=\s*\{([\s\S]*?)\n\};/.exec(text);
    if (!table) continue;
    const vars = {};
    for (const m of table[1].matchAll(entry))
      vars[m[1]] = { required: m[2] === "NULL", secret: m[3] === "true" };
    if (Object.keys(vars).length === 0)
      throw new Error(`${f}: a cfg_var table this test cannot read`);
    out[bin] = { vars };
  }
  return out;
}

// ---- helpers over the rendered objects ---------------------------------

const WORKLOAD_KINDS = ["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob"];

function podTemplate(o) {
  if (o.kind === "CronJob") return o.spec.jobTemplate.spec.template;
  return o.spec.template;
}

function matches(selector, labels) {
  if (!selector) return false;
  if (selector.matchExpressions && selector.matchExpressions.length)
    throw new Error("matchExpressions: not understood by this test; use matchLabels");
  return Object.entries(selector.matchLabels || {}).every(([k, v]) => labels[k] === v);
}

function isEstore(c) {
  const name = c.image.split("/").pop().split(/[:@]/)[0];
  return name === "estore";
}

function policy(file, env, src) {
  const problems = [];
  let checked = 0;
  const fail = (what) => problems.push(what);
  const objs = readObjects(file);
  const byKind = (k) => objs.filter((o) => o.kind === k);
  const find = (k, n) => objs.find((o) => o.kind === k && o.metadata.name === n);
  const code = codeConfig(src);

  const workloads = objs.filter((o) => WORKLOAD_KINDS.includes(o.kind));
  if (workloads.length === 0) fail("no workloads rendered");
  const services = byKind("Service");
  const podLabels = (w) => podTemplate(w).metadata.labels || {};
  const workloadsOf = (sel) => workloads.filter((w) => matches({ matchLabels: sel }, podLabels(w)));

  // Every namespaced object lands in the overlay's namespace.
  const ns = byKind("Namespace");
  if (ns.length !== 1) fail(`expected one Namespace, found ${ns.length}`);
  else if ((ns[0].metadata.labels || {})["pod-security.kubernetes.io/enforce"] !== "restricted")
    fail(`Namespace ${ns[0].metadata.name}: Pod Security must enforce "restricted"`);
  if (ns.length === 1) for (const o of objs)
    if (o.kind !== "Namespace" && o.metadata.namespace !== ns[0].metadata.name)
      fail(`${id(o)}: not in namespace ${ns[0].metadata.name}`);

  // The environment of each estore container, as far as the manifests
  // set it: ConfigMaps by envFrom, then env.
  function envOf(c) {
    const env = {};
    for (const ef of c.envFrom || []) {
      if (ef.configMapRef) {
        const cm = find("ConfigMap", ef.configMapRef.name);
        if (!cm) { fail(`${c.name}: envFrom ConfigMap ${ef.configMapRef.name} is not rendered`); continue; }
        for (const [k, v] of Object.entries(cm.data || {})) env[k] = { value: v, from: "configmap" };
      } else if (ef.secretRef) {
        const s = find("Secret", ef.secretRef.name);
        if (!s) { fail(`${c.name}: envFrom Secret ${ef.secretRef.name} is not rendered`); continue; }
        for (const k of Object.keys(s.data || {})) env[k] = { from: "secret" };
      }
    }
    for (const e of c.env || []) {
      if ("value" in e) env[e.name] = { value: e.value, from: "literal" };
      else if (e.valueFrom && e.valueFrom.secretKeyRef) {
        const r = e.valueFrom.secretKeyRef;
        const s = find("Secret", r.name);
        if (!s) fail(`${c.name}: ${e.name}: Secret ${r.name} is not rendered`);
        else if (!(s.data || {})[r.key]) fail(`${c.name}: ${e.name}: Secret ${r.name} has no key ${r.key} (secrets.env.example?)`);
        env[e.name] = { from: "secret" };
      } else if (e.valueFrom && e.valueFrom.configMapKeyRef) {
        const r = e.valueFrom.configMapKeyRef;
        const cm = find("ConfigMap", r.name);
        if (!cm || !(r.key in (cm.data || {}))) fail(`${c.name}: ${e.name}: ConfigMap ${r.name} has no key ${r.key}`);
        else env[e.name] = { value: cm.data[r.key], from: "configmap" };
      } else env[e.name] = { from: "other" };
    }
    return env;
  }

  // A secret has no business in a ConfigMap, whoever reads it.
  const secretVars = new Set(Object.values(code).flatMap((b) =>
    Object.entries(b.vars).filter(([, m]) => m.secret).map(([v]) => v)));
  for (const cm of byKind("ConfigMap"))
    for (const k of Object.keys(cm.data || {}))
      if (secretVars.has(k)) fail(`ConfigMap ${cm.metadata.name}: ${k} is a secret; it belongs in the Secret`);

  // ---- every pod ----
  const deps = []; // {from: workload, host, port, target: workload|null, var}
  for (const w of workloads) {
    checked++;
    const t = podTemplate(w);
    const ps = t.spec;
    const W = id(w);
    const psc = ps.securityContext || {};
    if (ps.enableServiceLinks !== false)
      fail(`${W}: enableServiceLinks must be false (Kubernetes' <NAME>_SERVICE_HOST variables collide with ours)`);
    if (ps.automountServiceAccountToken !== false)
      fail(`${W}: automountServiceAccountToken must be false`);
    if (ps.hostNetwork || ps.hostPID || ps.hostIPC) fail(`${W}: uses the host's namespaces`);
    const spread = (ps.topologySpreadConstraints || []).some((tc) =>
      tc.topologyKey === "kubernetes.io/hostname" && matches(tc.labelSelector, podLabels(w)));
    if (!spread) fail(`${W}: no topologySpreadConstraint over kubernetes.io/hostname selecting its own pods`);
    if (psc.runAsUser === 0 || psc.runAsGroup === 0) fail(`${W}: runs as root`);

    const all = [...(ps.initContainers || []), ...ps.containers];
    for (const c of all) {
      const C = `${W} container ${c.name}`;
      const sc = c.securityContext || {};
      const r = c.resources || {};
      for (const kind of ["requests", "limits"])
        for (const res of ["cpu", "memory"])
          if (!r[kind] || r[kind][res] === undefined) fail(`${C}: no ${kind}.${res}`);
      if (sc.allowPrivilegeEscalation !== false) fail(`${C}: allowPrivilegeEscalation must be false`);
      if (sc.readOnlyRootFilesystem !== true) fail(`${C}: readOnlyRootFilesystem must be true`);
      if (sc.privileged) fail(`${C}: privileged`);
      const caps = sc.capabilities || {};
      if (!(caps.drop || []).includes("ALL")) fail(`${C}: capabilities.drop must hold ALL`);
      if ((caps.add || []).length) fail(`${C}: adds capabilities ${caps.add}`);
      if ((sc.runAsNonRoot ?? psc.runAsNonRoot) !== true) fail(`${C}: runAsNonRoot must be true`);
      if ((sc.runAsUser ?? psc.runAsUser) === 0) fail(`${C}: runs as root`);
      const seccomp = (sc.seccompProfile || psc.seccompProfile || {}).type;
      if (seccomp !== "RuntimeDefault") fail(`${C}: seccompProfile must be RuntimeDefault`);
    }
    for (const c of ps.containers) {
      const C = `${W} container ${c.name}`;
      for (const p of ["startupProbe", "readinessProbe", "livenessProbe"]) {
        const pr = c[p];
        const handlers = pr ? ["exec", "httpGet", "tcpSocket", "grpc"].filter((h) => pr[h]) : [];
        if (handlers.length !== 1) fail(`${C}: ${p}: expected one probe handler, found ${handlers.length}`);
      }
      if (!isEstore(c)) continue;

      // estore: gRPC servers are probed on grpc.health.v1 at their gRPC
      // port, the HTTP edge on /healthz (alive) and /readyz (ready).
      const ports = c.ports || [];
      const grpcPort = ports.find((p) => p.name === "grpc");
      const httpPort = ports.find((p) => p.name === "http");
      if (grpcPort) {
        for (const p of ["startupProbe", "readinessProbe", "livenessProbe"])
          if (!c[p] || !c[p].grpc || c[p].grpc.port !== grpcPort.containerPort)
            fail(`${C}: ${p} must be a gRPC probe on port ${grpcPort.containerPort}`);
        // Liveness asks "liveness" (the process answers), readiness the
        // whole server ("": its dependencies too), so a database outage
        // takes pods out of rotation without restarting them.
        if (c.livenessProbe && c.livenessProbe.grpc && c.livenessProbe.grpc.service !== "liveness")
          fail(`${C}: livenessProbe must ask grpc.health.v1 for service "liveness"`);
        if (c.readinessProbe && c.readinessProbe.grpc && c.readinessProbe.grpc.service)
          fail(`${C}: readinessProbe must ask for the whole server (no service)`);
      } else if (httpPort) {
        const want = { startupProbe: "/healthz", livenessProbe: "/healthz", readinessProbe: "/readyz" };
        for (const [p, pathWanted] of Object.entries(want)) {
          const g = c[p] && c[p].httpGet;
          if (!g || g.path !== pathWanted || (g.port !== "http" && g.port !== httpPort.containerPort))
            fail(`${C}: ${p} must be GET ${pathWanted} on the http port`);
        }
      } else fail(`${C}: an estore container with neither a "grpc" nor an "http" port`);

      // The program it runs reads its settings from the environment:
      // required ones set, secrets only from Secrets, nothing unknown.
      const bin = (c.command || [])[0];
      const cfg = code[bin];
      if (!cfg) { fail(`${C}: runs ${bin}, which has no configuration table in the sources`); continue; }
      const env = envOf(c);
      for (const [v, meta] of Object.entries(cfg.vars)) {
        if (meta.required && !env[v]) fail(`${C}: ${bin} requires ${v}, which is not set`);
        if (meta.secret && env[v] && env[v].from !== "secret")
          fail(`${C}: ${v} is a secret but comes from ${env[v].from}, not a Secret`);
      }
      for (const v of Object.keys(env))
        if (!Object.values(code).some((b) => v in b.vars))
          fail(`${C}: ${v} is set but no service reads it`);
      // Its dependencies: every *_HOST it reads (but the one it listens on).
      for (const v of Object.keys(cfg.vars)) {
        if (!v.endsWith("_HOST") || v === "LISTEN_HOST") continue;
        const pv = v.replace(/_HOST$/, "_PORT");
        const host = env[v] && env[v].value, port = env[pv] && Number(env[pv].value);
        if (!host || !port) { fail(`${C}: ${bin} reads ${v} and ${pv}; both must be set`); continue; }
        if (host === "127.0.0.1" || host === "localhost" || host === "::1") { fail(`${C}: ${v}=${host}: nothing listens there in a pod`); continue; }
        const svc = services.find((s) => s.metadata.name === host || host.startsWith(`${s.metadata.name}.${s.metadata.namespace}.`));
        deps.push({ from: w, v, host, port, svc });
      }
    }
  }

  // ---- Services: addressable, headless for gRPC ----
  for (const s of services) {
    checked++;
    const targets = workloadsOf(s.spec.selector || {});
    if (targets.length === 0) fail(`Service ${s.metadata.name}: selects no workload`);
    const grpcBehind = targets.some((w) => podTemplate(w).spec.containers.some((c) => isEstore(c) && (c.ports || []).some((p) => p.name === "grpc")));
    if (grpcBehind && s.spec.clusterIP !== "None")
      fail(`Service ${s.metadata.name}: gRPC clients balance over the pods' addresses; make it headless (clusterIP: None)`);
  }
  const targetPort = (s, port) => {
    const sp = (s.spec.ports || []).find((p) => p.port === port);
    if (!sp) return null;
    const tp = sp.targetPort === undefined ? sp.port : sp.targetPort;
    if (typeof tp === "number") return tp;
    for (const w of workloadsOf(s.spec.selector || {}))
      for (const c of podTemplate(w).spec.containers)
        for (const p of c.ports || []) if (p.name === tp) return p.containerPort;
    return null;
  };
  const flows = []; // expected: {from, to (workload) | external, port}
  for (const d of deps) {
    if (d.svc) {
      const tp = targetPort(d.svc, d.port);
      if (tp === null) { fail(`${id(d.from)}: ${d.v}=${d.host} port ${d.port}: Service ${d.svc.metadata.name} has no such port`); continue; }
      for (const t of workloadsOf(d.svc.spec.selector || {})) flows.push({ from: d.from, to: t, port: tp, why: d.v });
    } else if (env === "dev") {
      fail(`${id(d.from)}: ${d.v}=${d.host}: dev runs everything in the cluster, and no Service is named so`);
    } else flows.push({ from: d.from, to: null, port: d.port, why: d.v });
  }
  const dedupe = (arr) => arr.filter((f, i) => arr.findIndex((g) => g.from === f.from && g.to === f.to && g.port === f.port) === i);
  const expected = dedupe(flows);

  // ---- per environment ----
  const replicasOf = (w) => {
    const hpa = byKind("HorizontalPodAutoscaler").find((h) => h.spec.scaleTargetRef.kind === w.kind && h.spec.scaleTargetRef.name === w.metadata.name);
    return hpa ? Math.min(hpa.spec.minReplicas || 1, w.spec.replicas ?? 1) : (w.spec.replicas ?? 1);
  };
  if (env === "dev") {
    for (const w of workloads) if (replicasOf(w) !== 1) fail(`${id(w)}: dev runs one replica of everything`);
    for (const name of ["postgres", "redis", "rabbitmq"])
      if (!workloads.some((w) => w.metadata.name === name)) fail(`dev: no ${name} workload`);
    const pg = find("StatefulSet", "postgres");
    if (!pg || !(pg.spec.volumeClaimTemplates || []).length) fail("dev: PostgreSQL must be a StatefulSet with a PVC");
    if (byKind("NetworkPolicy").length) fail("dev: NetworkPolicies are prod's");
  } else {
    for (const w of workloads) {
      if (replicasOf(w) < 2) fail(`${id(w)}: prod runs 2 or more replicas`);
      const pdbs = byKind("PodDisruptionBudget").filter((p) => matches(p.spec.selector, podLabels(w)));
      if (pdbs.length !== 1) fail(`${id(w)}: expected one PodDisruptionBudget, found ${pdbs.length}`);
      else if (pdbs[0].spec.maxUnavailable === undefined && !(pdbs[0].spec.minAvailable >= 1))
        fail(`${id(w)}: its PodDisruptionBudget allows every pod to go`);
    }
    for (const name of ["postgres", "redis"])
      if (workloads.some((w) => w.metadata.name === name)) fail(`prod: ${name} is managed outside the cluster`);
    for (const name of ["edge", "auth"]) {
      const h = byKind("HorizontalPodAutoscaler").find((x) => x.spec.scaleTargetRef.name === name);
      if (!h) fail(`prod: no HorizontalPodAutoscaler for ${name}`);
      else if (!find(h.spec.scaleTargetRef.kind, name)) fail(`HPA ${h.metadata.name}: its target is not rendered`);
      else if (!(h.spec.minReplicas >= 2) || !(h.spec.maxReplicas > h.spec.minReplicas)) fail(`HPA ${name}: minReplicas >= 2 and maxReplicas above it`);
    }
    // Ingress: TLS for every host, backends that exist.
    const ings = byKind("Ingress");
    if (ings.length === 0) fail("prod: no Ingress");
    const ingressTargets = [];
    for (const ing of ings) {
      const tlsHosts = (ing.spec.tls || []).flatMap((t) => (t.secretName ? t.hosts || [] : []));
      for (const rule of ing.spec.rules || []) {
        if (!rule.host || !tlsHosts.includes(rule.host)) fail(`Ingress ${ing.metadata.name}: host ${rule.host} has no TLS`);
        for (const p of (rule.http || {}).paths || []) {
          const b = p.backend.service;
          const s = b && find("Service", b.name);
          if (!s) { fail(`Ingress ${ing.metadata.name}: backend ${b && b.name} is not rendered`); continue; }
          const sp = (s.spec.ports || []).find((x) => x.name === b.port.name || x.port === b.port.number);
          const tp = sp && targetPort(s, sp.port);
          if (!tp) { fail(`Ingress ${ing.metadata.name}: Service ${s.metadata.name} has no port ${JSON.stringify(b.port)}`); continue; }
          for (const t of workloadsOf(s.spec.selector)) ingressTargets.push({ to: t, port: tp });
        }
      }
    }
    problems.push(...networkPolicies(objs, workloads, podLabels, expected, ingressTargets));
    checked += byKind("NetworkPolicy").length;
  }
  return { checked, problems };
}

// NetworkPolicies: a default deny, and then exactly the expected flows
// (each allowed on both ends), DNS, and the Ingress controller to the
// Ingress's backends. Only the shapes used here are understood; anything
// else is reported rather than guessed at.
function networkPolicies(objs, workloads, podLabels, expected, ingressTargets) {
  const problems = [];
  const fail = (w) => problems.push(w);
  const nps = objs.filter((o) => o.kind === "NetworkPolicy");
  const types = (np) => np.spec.policyTypes || ["Ingress"];
  const deny = nps.find((np) => Object.keys(np.spec.podSelector || {}).length === 0 &&
    types(np).includes("Ingress") && types(np).includes("Egress") && !np.spec.ingress && !np.spec.egress);
  if (!deny) fail("prod: no default-deny NetworkPolicy (podSelector {}, Ingress and Egress, no rules)");
  const selecting = (w) => nps.filter((np) => matches(np.spec.podSelector, podLabels(w)) ||
    Object.keys(np.spec.podSelector || {}).length === 0);
  const isDns = (peer, ports) => peer.namespaceSelector && peer.podSelector &&
    (peer.namespaceSelector.matchLabels || {})["kubernetes.io/metadata.name"] === "kube-system" &&
    (peer.podSelector.matchLabels || {})["k8s-app"] === "kube-dns" &&
    ports.length > 0 && ports.every((p) => p.port === 53);
  const portNum = (w, p) => {
    if (typeof p.port === "number") return p.port;
    for (const c of podTemplate(w).spec.containers) for (const cp of c.ports || []) if (cp.name === p.port) return cp.containerPort;
    return null;
  };
  const has = (arr, f) => arr.some(f);
  const allowed = { egress: [], ingress: [] }; // {w, peer: workload|"ipBlock"|"dns"|"namespace", port}

  for (const w of workloads) {
    const W = id(w);
    const mine = selecting(w);
    if (!mine.some((np) => types(np).includes("Ingress"))) fail(`${W}: no NetworkPolicy governs its ingress`);
    if (!mine.some((np) => types(np).includes("Egress"))) fail(`${W}: no NetworkPolicy governs its egress`);
    for (const np of mine) {
      for (const dir of ["egress", "ingress"]) {
        for (const rule of np.spec[dir] || []) {
          const peers = rule[dir === "egress" ? "to" : "from"] || [];
          const ports = rule.ports || [];
          if (!peers.length || !ports.length) { fail(`NetworkPolicy ${np.metadata.name}: a ${dir} rule without peers or ports allows too much`); continue; }
          for (const port of ports) {
            if ((port.protocol || "TCP") !== "TCP" && !isDns(peers[0], ports)) fail(`NetworkPolicy ${np.metadata.name}: ${port.protocol}`);
          }
          for (const peer of peers) {
            if (isDns(peer, ports)) {
              if (dir === "egress") allowed.egress.push({ w, peer: "dns", port: 53 });
              else fail(`NetworkPolicy ${np.metadata.name}: DNS ingress?`);
              continue;
            }
            for (const port of ports) {
              if (peer.ipBlock) {
                if (dir === "egress") allowed.egress.push({ w, peer: "ipBlock", port: port.port, np });
                else fail(`NetworkPolicy ${np.metadata.name}: ingress from an ipBlock`);
              } else if (peer.namespaceSelector) {
                if (dir === "ingress") allowed.ingress.push({ w, peer: "namespace", port: portNum(w, port), np });
                else fail(`NetworkPolicy ${np.metadata.name}: egress to another namespace`);
              } else if (peer.podSelector) {
                const others = workloads.filter((x) => matches(peer.podSelector, podLabels(x)));
                if (!others.length) fail(`NetworkPolicy ${np.metadata.name}: a peer that selects no pod`);
                for (const x of others)
                  allowed[dir].push({ w, peer: x, port: dir === "egress" ? portNum(x, port) : portNum(w, port), np });
              } else fail(`NetworkPolicy ${np.metadata.name}: a peer this test does not understand`);
            }
          }
        }
      }
    }
  }
  // Each expected flow allowed on both ends...
  for (const f of expected) {
    const what = `${id(f.from)} -> ${f.to ? id(f.to) : "external"}:${f.port} (${f.why})`;
    if (f.to) {
      if (!has(allowed.egress, (a) => a.w === f.from && a.peer === f.to && a.port === f.port)) fail(`${what}: egress not allowed`);
      if (!has(allowed.ingress, (a) => a.w === f.to && a.peer === f.from && a.port === f.port)) fail(`${what}: ingress not allowed`);
    } else if (!has(allowed.egress, (a) => a.w === f.from && a.peer === "ipBlock" && a.port === f.port)) fail(`${what}: egress to an ipBlock not allowed`);
  }
  for (const t of ingressTargets)
    if (!has(allowed.ingress, (a) => a.w === t.to && a.peer === "namespace" && a.port === t.port))
      fail(`${id(t.to)}: the Ingress controller's namespace may not reach port ${t.port}`);
  for (const w of workloads)
    if (!has(allowed.egress, (a) => a.w === w && a.peer === "dns")) fail(`${id(w)}: no DNS egress`);
  // ...and nothing else.
  for (const a of allowed.egress) {
    if (a.peer === "dns") continue;
    const ok = a.peer === "ipBlock"
      ? expected.some((f) => f.from === a.w && !f.to && f.port === a.port)
      : expected.some((f) => f.from === a.w && f.to === a.peer && f.port === a.port);
    if (!ok) fail(`NetworkPolicy ${a.np.metadata.name}: allows ${id(a.w)} -> ${a.peer === "ipBlock" ? "ipBlock" : id(a.peer)}:${a.port}, which no configuration asks for`);
  }
  for (const a of allowed.ingress) {
    const ok = a.peer === "namespace"
      ? ingressTargets.some((t) => t.to === a.w && t.port === a.port)
      : expected.some((f) => f.from === a.peer && f.to === a.w && f.port === a.port);
    if (!ok) fail(`NetworkPolicy ${a.np.metadata.name}: allows ${a.peer === "namespace" ? "another namespace" : id(a.peer)} -> ${id(a.w)}:${a.port}, which no configuration asks for`);
  }
  return problems;
}

function main(argv) {
  const [mode, file, env, src] = argv;
  let r;
  if (mode === "schema" && file) r = schema(file);
  else if (mode === "kustomization" && file) r = kustomizations(file);
  else if (mode === "policy" && file && (env === "dev" || env === "prod") && src) r = policy(file, env, src);
  else {
    console.error("usage: check.js schema FILE | check.js kustomization K8SDIR | check.js policy FILE dev|prod SRCDIR");
    return 2;
  }
  for (const p of r.problems) console.log(`FAIL ${p}`);
  console.log(`${mode} ${path.basename(file)}: ${r.checked} objects checked`);
  console.log(`${r.problems.length ? 0 : 1} passed, ${r.problems.length ? 1 : 0} failed`);
  return r.problems.length ? 1 : 0;
}

try {
  process.exitCode = main(process.argv.slice(2));
} catch (e) {
  console.log(`FAIL ${e.message}`);
  process.exitCode = 1;
}
