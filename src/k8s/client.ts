/**
 * The connection to the Kubernetes API server: where its configuration comes
 * from, and the two requests the resource source makes (a JSON GET and a
 * watch stream). @kubernetes/client-node supplies the kubeconfig handling
 * (files, in-cluster service account, TLS, token and exec credentials);
 * requests go through node's http/https with the agent and headers it builds,
 * so every failure is a coded KubeApiError with the HTTP status when there is
 * one.
 *
 *   const { kubeConfig, from } = resolveKubeConfig({ kubeconfigPath: cfg.k8sKubeconfigPath, serviceHost: cfg.k8sServiceHost, servicePort: cfg.k8sServicePort });
 *   const client = new KubeClient(kubeConfig);
 *   const list = await client.getJson('/api/v1/pods', { limit: '500' });
 *   await client.watch('/api/v1/pods', { resourceVersion: rv }, (line) => …, abortSignal);
 *
 * Resolution order (the first that applies wins): an explicit kubeconfig
 * (`--kubeconfig FILE`, config key k8sKubeconfigPath), the KUBECONFIG
 * environment variable (a path list, merged as kubectl does), the in-cluster
 * service account (its token file present; the server is k8sServiceHost and
 * k8sServicePort when set, as Cilium's Helm values name them, otherwise
 * KUBERNETES_SERVICE_HOST/PORT). Nothing found is MESHD_K8S_NO_CONFIG.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import type { Socket } from 'node:net';
import { delimiter, join } from 'node:path';
import { createInterface } from 'node:readline';
import { KubeConfig } from '@kubernetes/client-node';
import { MeshdError, type ErrorKind } from '../util/errors.js';

export type KubeClientErrorCode =
  /** No kubeconfig, no KUBECONFIG and no in-cluster service account. */
  | 'MESHD_K8S_NO_CONFIG'
  /** A kubeconfig could not be read or names no usable cluster. */
  | 'MESHD_K8S_CONFIG_INVALID';

export class KubeConfigError extends MeshdError {
  declare readonly code: KubeClientErrorCode;
  constructor(code: KubeClientErrorCode, message: string, opts: { cause?: unknown } = {}) {
    super(code, message, { kind: code === 'MESHD_K8S_NO_CONFIG' ? 'not-found' : 'invalid', cause: opts.cause });
  }
}

export type KubeApiErrorCode =
  /** The server could not be reached or the connection broke. */
  | 'MESHD_K8S_UNREACHABLE'
  /** The server answered with an error status (see `status`). */
  | 'MESHD_K8S_API_STATUS'
  /** The server's answer is not what the API promises (not JSON, wrong shape). */
  | 'MESHD_K8S_BAD_RESPONSE'
  /** The kubeconfig's credentials or TLS settings could not be applied (an exec plugin failed, a file is gone). */
  | 'MESHD_K8S_CREDENTIALS';

export class KubeApiError extends MeshdError {
  declare readonly code: KubeApiErrorCode;
  constructor(
    code: KubeApiErrorCode,
    message: string,
    /** HTTP status (or the status code of a watch ERROR event); undefined when there was no answer. */
    readonly status?: number,
    opts: { cause?: unknown } = {},
  ) {
    super(code, message, { kind: kindOfStatus(code, status), cause: opts.cause });
  }
}

function kindOfStatus(code: KubeApiErrorCode, status: number | undefined): ErrorKind {
  if (code !== 'MESHD_K8S_API_STATUS') return code === 'MESHD_K8S_UNREACHABLE' ? 'unavailable' : 'failed';
  if (status === 404 || status === 410) return 'not-found';
  if (status === 409) return 'conflict';
  if (status !== undefined && (status >= 500 || status === 429)) return 'unavailable';
  return 'failed';
}

export interface KubeConfigOptions {
  /** `--kubeconfig FILE` or the config key k8sKubeconfigPath. */
  kubeconfigPath?: string | undefined;
  /** Config keys k8sServiceHost / k8sServicePort (in-cluster server override). */
  serviceHost?: string | undefined;
  servicePort?: number | undefined;
  env?: NodeJS.ProcessEnv;
  /** Where the service account is mounted (tests point it elsewhere). */
  serviceAccountDir?: string;
}

export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export interface ResolvedKubeConfig {
  kubeConfig: KubeConfig;
  /** What was used, for logs and status: "kubeconfig FILE", "KUBECONFIG", "in-cluster". */
  from: string;
  server: string;
}

function loadFile(kc: KubeConfig, file: string): void {
  try {
    kc.loadFromFile(file);
  } catch (e) {
    throw new KubeConfigError('MESHD_K8S_CONFIG_INVALID', `${file}: cannot load the kubeconfig (${e instanceof Error ? e.message : String(e)})`, { cause: e });
  }
}

function checked(kc: KubeConfig, from: string): ResolvedKubeConfig {
  const cluster = kc.getCurrentCluster();
  if (!cluster?.server) throw new KubeConfigError('MESHD_K8S_CONFIG_INVALID', `${from}: the current context names no cluster with a server`);
  return { kubeConfig: kc, from, server: cluster.server };
}

export function resolveKubeConfig(o: KubeConfigOptions = {}): ResolvedKubeConfig {
  const env = o.env ?? process.env;
  const kc = new KubeConfig();
  if (o.kubeconfigPath) {
    loadFile(kc, o.kubeconfigPath);
    return checked(kc, `kubeconfig ${o.kubeconfigPath}`);
  }
  const list = (env.KUBECONFIG ?? '').split(delimiter).filter((f) => f !== '');
  if (list.length > 0) {
    const [first, ...rest] = list;
    if (first !== undefined) loadFile(kc, first);
    for (const f of rest) {
      if (!existsSync(f)) continue; // kubectl skips missing entries of the list as well
      const more = new KubeConfig();
      loadFile(more, f);
      kc.mergeConfig(more, true);
    }
    return checked(kc, `KUBECONFIG ${list.join(delimiter)}`);
  }
  const saDir = o.serviceAccountDir ?? SERVICE_ACCOUNT_DIR;
  const tokenFile = join(saDir, 'token');
  const host = o.serviceHost ?? env.KUBERNETES_SERVICE_HOST;
  const port = o.servicePort ?? (env.KUBERNETES_SERVICE_PORT ? Number(env.KUBERNETES_SERVICE_PORT) : undefined);
  if (existsSync(tokenFile) && host && port) {
    const bracketed = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
    kc.loadFromClusterAndUser(
      { name: 'in-cluster', server: `https://${bracketed}:${port}`, caFile: join(saDir, 'ca.crt'), skipTLSVerify: false },
      { name: 'in-cluster', authProvider: { name: 'tokenFile', config: { tokenFile } } },
    );
    return checked(kc, 'in-cluster service account');
  }
  const why = existsSync(tokenFile) ? `a service account is mounted at ${saDir} but the API server's address is unknown (set k8sServiceHost and k8sServicePort)` : `no --kubeconfig, no KUBECONFIG and no service account at ${saDir}`;
  throw new KubeConfigError('MESHD_K8S_NO_CONFIG', `cannot find the Kubernetes API server: ${why}; use --standalone DIR to run without a cluster`);
}

/** A JSON body as it arrived: validated by the caller (zod), never cast. */
export type Json = unknown;

/** API verbs as the API server's metrics name them: a GET with `watch=true` is a WATCH. */
export type KubeVerb = 'GET' | 'WATCH' | WriteMethod;

/**
 * Requests sent to the API server, by verb: one per HTTP request (a watch
 * when it is opened), counted when sent, whatever the answer. What a node's
 * agent costs the API server is the rate of this counter.
 */
export interface KubeRequestCounts {
  total: number;
  byVerb: Partial<Record<KubeVerb, number>>;
}

class RequestCounter {
  private counts: KubeRequestCounts = { total: 0, byVerb: {} };
  constructor(private readonly parent?: RequestCounter) {}

  add(verb: KubeVerb): void {
    this.counts.total += 1;
    this.counts.byVerb[verb] = (this.counts.byVerb[verb] ?? 0) + 1;
    this.parent?.add(verb);
  }

  snapshot(): KubeRequestCounts {
    return { total: this.counts.total, byVerb: { ...this.counts.byVerb } };
  }
}

const processRequests = new RequestCounter();

/** Requests of every KubeClient of this process since it started. */
export function kubeRequestCounts(): KubeRequestCounts {
  return processRequests.snapshot();
}

/** TLS material client-node puts on the request options; a change of any of it means new connections. */
const TLS_FIELDS = ['ca', 'cert', 'key', 'pfx', 'passphrase', 'rejectUnauthorized', 'servername', 'ciphers', 'crl', 'secureProtocol'] as const;

function tlsFingerprint(opts: https.RequestOptions): string {
  const h = createHash('sha256');
  for (const f of TLS_FIELDS) {
    const v: unknown = opts[f];
    h.update(`${f}:`);
    for (const part of Array.isArray(v) ? v : [v]) {
      if (Buffer.isBuffer(part)) h.update(part);
      else if (part !== undefined) h.update(JSON.stringify(part) ?? '');
      h.update('\0');
    }
  }
  return h.digest('hex');
}

/** Stops using a connection pool whose credentials were replaced: idle connections close now, busy ones (watches) when they finish. */
function retire(agent: http.Agent): void {
  for (const list of Object.values(agent.freeSockets)) for (const socket of list ?? []) socket.destroy();
  agent.on('free', (socket: Socket) => socket.destroy());
}

/**
 * GET and watch against one API server. Credentials are applied per request,
 * so rotated service-account tokens (client-node re-reads the token file
 * every minute) and exec credentials are picked up.
 *
 * Connections are reused: one keep-alive pool per client, so a request
 * costs no TCP and TLS handshake once the pool is warm. The pool is rebuilt
 * only when the TLS material (CA, client certificate and key, server name)
 * changes; a bearer token is a header and rotates on the same connection.
 * Watches are long requests, each holding one connection for its lifetime;
 * the pool has no connection limit, so they never queue the short requests
 * behind them.
 */
export class KubeClient {
  readonly server: string;
  private readonly counter = new RequestCounter(processRequests);
  private pool: { fingerprint: string; agent: http.Agent } | null = null;
  private readonly plainHttp: boolean;

  constructor(private readonly kc: KubeConfig) {
    const server = kc.getCurrentCluster()?.server;
    if (!server) throw new KubeConfigError('MESHD_K8S_CONFIG_INVALID', 'the kubeconfig names no cluster with a server');
    this.server = server.replace(/\/+$/, '');
    this.plainHttp = this.server.startsWith('http:');
  }

  /** The keep-alive pool for these credentials (client-node's one-off agent is dropped); a proxied cluster keeps client-node's agent. */
  private agentFor(opts: https.RequestOptions): http.Agent | undefined {
    if (this.kc.getCurrentCluster()?.proxyUrl) return undefined;
    const fingerprint = tlsFingerprint(opts);
    if (this.pool?.fingerprint === fingerprint) return this.pool.agent;
    if (this.pool) retire(this.pool.agent);
    const keep = { keepAlive: true, keepAliveMsecs: 30_000, maxSockets: Infinity, maxFreeSockets: 16, scheduling: 'lifo' as const };
    const tls: https.AgentOptions = {};
    for (const f of TLS_FIELDS) if (opts[f] !== undefined) Object.assign(tls, { [f]: opts[f] });
    const agent = this.plainHttp ? new http.Agent(keep) : new https.Agent({ ...tls, ...keep });
    this.pool = { fingerprint, agent };
    return agent;
  }

  /** Closes the pooled connections (idle ones at once, busy ones as they finish). Idempotent; later requests open a new pool. */
  close(): void {
    if (this.pool) retire(this.pool.agent);
    this.pool = null;
  }

  private async open(path: string, query: Record<string, string>, signal?: AbortSignal, write?: { method: WriteMethod; body?: string; contentType: string }): Promise<http.IncomingMessage> {
    const url = new URL(this.server + path);
    for (const [k, v] of Object.entries(query)) url.searchParams.set(k, v);
    const headers: Record<string, string> = { Accept: 'application/json' };
    if (write?.body !== undefined) {
      headers['Content-Type'] = write.contentType;
      // node frames no body of a DELETE by default (no chunked encoding): without a length the API server reads none
      // (a DeleteOptions precondition is lost) and, on a kept-alive connection, takes it for the next request.
      headers['Content-Length'] = String(Buffer.byteLength(write.body));
    }
    const opts: https.RequestOptions = { method: write?.method ?? 'GET', headers };
    try {
      await this.kc.applyToHTTPSOptions(opts);
    } catch (e) {
      throw new KubeApiError('MESHD_K8S_CREDENTIALS', `${url.host}: cannot apply the kubeconfig's credentials (${e instanceof Error ? e.message : String(e)})`, undefined, { cause: e });
    }
    const agent = this.agentFor(opts);
    if (agent) opts.agent = agent;
    const lib = url.protocol === 'http:' ? http : https;
    this.counter.add(write?.method ?? (query.watch === 'true' ? 'WATCH' : 'GET'));
    return new Promise((resolve, reject) => {
      const req = lib.request(url, { ...opts, ...(signal ? { signal } : {}) }, resolve);
      req.on('error', (e) => reject(new KubeApiError('MESHD_K8S_UNREACHABLE', `${url.host}: ${e.message}`, undefined, { cause: e })));
      req.end(write?.body);
    });
  }

  private async failure(res: http.IncomingMessage, path: string, method = 'GET'): Promise<KubeApiError> {
    let text = '';
    try {
      for await (const chunk of res) text += String(chunk);
    } catch {
      // The body of an error is only used for its message; the status says enough.
    }
    const status = res.statusCode ?? 0;
    return new KubeApiError('MESHD_K8S_API_STATUS', `${method} ${path}: ${status} ${statusMessage(text) ?? res.statusMessage ?? ''}`.trim(), status);
  }

  /** Requests this client sent (see KubeRequestCounts). */
  requests(): KubeRequestCounts {
    return this.counter.snapshot();
  }

  async getJson(path: string, query: Record<string, string> = {}, signal?: AbortSignal): Promise<Json> {
    const res = await this.open(path, query, signal);
    if (res.statusCode !== 200) throw await this.failure(res, path);
    return readJson(res, `GET ${path}`);
  }

  /**
   * A write (POST create, PUT replace, PATCH, DELETE) with a JSON body; resolves with the answer's
   * JSON on 2xx. A refusal is MESHD_K8S_API_STATUS with `status` (409 for AlreadyExists and failed
   * preconditions, 404 for a missing object). `patch` is sent as a JSON merge patch.
   */
  async send(method: WriteMethod, path: string, body?: unknown, query: Record<string, string> = {}, signal?: AbortSignal): Promise<Json> {
    const contentType = method === 'PATCH' ? 'application/merge-patch+json' : 'application/json';
    const res = await this.open(path, query, signal, { method, contentType, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
    const status = res.statusCode ?? 0;
    if (status < 200 || status > 299) throw await this.failure(res, path, method);
    return readJson(res, `${method} ${path}`);
  }


  /**
   * Streams a watch: `onOpen` once the server accepted it, `onLine` per
   * event object. Resolves when the server ends the stream (a timeout, a
   * restart); rejects with a KubeApiError on a refused or broken connection.
   * Aborting `signal` ends it quietly.
   */
  async watch(path: string, query: Record<string, string>, handlers: { onOpen(): void; onLine(event: Json): void }, signal: AbortSignal): Promise<void> {
    const res = await this.open(path, { ...query, watch: 'true' }, signal);
    if (res.statusCode !== 200) throw await this.failure(res, path);
    res.socket.setKeepAlive(true, 30_000);
    handlers.onOpen();
    const lines = createInterface({ input: res, crlfDelay: Infinity });
    try {
      for await (const line of lines) {
        if (line.trim() === '') continue;
        let ev: Json;
        try {
          ev = JSON.parse(line);
        } catch (e) {
          throw new KubeApiError('MESHD_K8S_BAD_RESPONSE', `watch ${path}: an event is not JSON`, undefined, { cause: e });
        }
        handlers.onLine(ev);
      }
    } catch (e) {
      if (signal.aborted) return;
      if (e instanceof KubeApiError) throw e;
      throw new KubeApiError('MESHD_K8S_UNREACHABLE', `watch ${path}: the connection broke (${e instanceof Error ? e.message : String(e)})`, undefined, { cause: e });
    } finally {
      res.destroy(); // a handler that threw leaves the stream open otherwise
    }
    if (!res.complete && !signal.aborted) throw new KubeApiError('MESHD_K8S_UNREACHABLE', `watch ${path}: the connection closed mid-stream`);
  }
}

export type WriteMethod = 'POST' | 'PUT' | 'PATCH' | 'DELETE';

async function readJson(res: http.IncomingMessage, what: string): Promise<Json> {
  let text = '';
  try {
    for await (const chunk of res) text += String(chunk);
  } catch (e) {
    throw new KubeApiError('MESHD_K8S_UNREACHABLE', `${what}: the connection broke (${e instanceof Error ? e.message : String(e)})`, undefined, { cause: e });
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new KubeApiError('MESHD_K8S_BAD_RESPONSE', `${what}: the answer is not JSON`, undefined, { cause: e });
  }
}

/** The `message` of a metav1.Status body, when the body is one. */
function statusMessage(text: string): string | undefined {
  try {
    const v: unknown = JSON.parse(text);
    if (typeof v === 'object' && v !== null && 'message' in v && typeof v.message === 'string') return v.message;
  } catch {
    // Not a Status object (a proxy's HTML page, say): the HTTP status line is the message.
  }
  return undefined;
}
