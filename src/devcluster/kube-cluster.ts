/**
 * A real Kubernetes control plane for tests: etcd and kube-apiserver on
 * 127.0.0.1 (ephemeral ports), built by scripts/k8s-binaries.sh into a cache
 * outside the repository, with its data in a temp dir removed on close. No
 * scheduler runs; unless `controllers: true` asks for kube-controller-manager
 * (Deployments, ReplicaSets, EndpointSlices, ServiceAccounts, namespace and
 * garbage collection), objects are stored and watched, nothing reconciles them.
 *
 *   const kube = await startKubeCluster({ t });          // close() runs in t.after
 *   await kube.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'a' } });
 *   await kube.ensureDefaultServiceAccount('a');          // Pods are refused without it
 *   const { stdout } = await kube.kubectl(['get', 'pods', '-n', 'a', '-o', 'json']);
 *   await kube.stopApiServer(); await kube.startApiServer(); // outage; etcd keeps the data
 *
 * Credentials: a static bearer token of a `system:masters` user (full rights
 * whatever RBAC says); authorization is RBAC, so an agent given another
 * identity is held to the roles a test grants it. The serving certificate is
 * signed by a CA made for this cluster (`caPath`, also in the kubeconfig).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { request as httpRequest } from 'node:http';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { MeshdError } from '../util/errors.js';
import { repoPath } from '../util/paths.js';
import { freePort } from './free-port.js';

/** Kept equal to KUBE_VERSION / ETCD_VERSION in scripts/k8s-binaries.sh. */
export const KUBE_VERSION = 'v1.37.2';
export const ETCD_VERSION = 'v3.7.3';

interface After {
  after(fn: () => Promise<void> | void): void;
}

/**
 * Where scripts/k8s-binaries.sh puts the binaries (the same rule as the
 * script's `--print-bin-dir`): $MESHD_CACHE_DIR, else $XDG_CACHE_HOME/meshd,
 * else ~/.cache/meshd; then k8s/<version>/bin.
 */
export function kubeBinDir(env: NodeJS.ProcessEnv = process.env): string {
  const nonEmpty = (v: string | undefined) => (v === undefined || v === '' ? undefined : v);
  const root = nonEmpty(env.MESHD_CACHE_DIR) ?? join(nonEmpty(env.XDG_CACHE_HOME) ?? join(nonEmpty(env.HOME) ?? homedir(), '.cache'), 'meshd');
  return join(root, 'k8s', KUBE_VERSION, 'bin');
}

export interface KubectlResult {
  stdout: string;
  stderr: string;
  code: number;
}

export interface KubeClusterOptions {
  /** When given, close() is registered with t.after (runs even when the test fails). */
  t?: After;
  /** Directory holding etcd, kube-apiserver and kubectl (default: kubeBinDir()). */
  binDir?: string;
  /** Extra kube-apiserver flags (`--name=value`), appended after the harness's own. */
  apiServerArgs?: string[];
  /** How long to wait for etcd's /health and the API server's /readyz (default 60 s). */
  readyTimeoutMs?: number;
  /**
   * Also run kube-controller-manager (from the same bin dir) with the controllers
   * that Deployments → ReplicaSets → Pods, Services → EndpointSlices, namespaces'
   * default ServiceAccounts, namespace deletion and owner-reference garbage
   * collection need. No scheduler: whoever runs the node binds the Pods.
   */
  controllers?: boolean;
}

export interface KubeCluster {
  /** A kubeconfig (context `meshd-test`) with the server, its CA and the admin token. */
  readonly kubeconfigPath: string;
  /** https://127.0.0.1:<port>; the same across stopApiServer()/startApiServer(). */
  readonly server: string;
  /** Bearer token of the admin user (group system:masters). */
  readonly token: string;
  /** PEM file of the CA that signed the serving certificate. */
  readonly caPath: string;
  /** The cluster's temp dir (etcd data, certificates, logs); removed by close(). */
  readonly dir: string;
  /** Runs the built kubectl against this cluster; never throws for a non-zero exit. */
  kubectl(args: string[], opts?: { input?: string }): Promise<KubectlResult>;
  /** `kubectl apply -f -` of YAML text or of objects; throws MESHD_KUBE_TEST_KUBECTL_FAILED on failure. */
  apply(yamlOrObjects: string | object | object[]): Promise<string>;
  /** Creates the namespace's `default` ServiceAccount (the controller-manager's job), if missing. */
  ensureDefaultServiceAccount(namespace: string): Promise<void>;
  /**
   * A kubeconfig for the ServiceAccount `namespace/name` (created if missing) with a token from
   * the TokenRequest API: that identity has only what RBAC grants it (nothing at first).
   */
  serviceAccountKubeconfig(namespace: string, name: string): Promise<{ kubeconfigPath: string; token: string }>;
  /** Stops kube-apiserver (etcd keeps running); idempotent. */
  stopApiServer(): Promise<void>;
  /** Starts kube-apiserver again on the same port and etcd, and waits for /readyz. */
  startApiServer(): Promise<void>;
  /** Process ids of the running etcd and kube-apiserver (null when not running). */
  pids(): { etcd: number | null; apiServer: number | null };
  /** Process id of kube-controller-manager (null when not running or not asked for). */
  controllerManagerPid(): number | null;
  /** Stops both processes and removes the temp dir; idempotent. */
  close(): Promise<void>;
}

class Proc {
  readonly exited: Promise<void>;
  private done = false;

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
    readonly logPath: string,
  ) {
    this.exited = once(child, 'exit').then(() => {
      this.done = true;
    });
    // A spawn failure (ENOENT, EACCES) is also an exit, reported by the log tail and the wait.
    child.on('error', () => {
      this.done = true;
    });
  }

  get running(): boolean {
    return !this.done && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** SIGTERM, then SIGKILL after `graceMs`. */
  async stop(graceMs = 5_000): Promise<void> {
    if (!this.running) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    try {
      await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  logTail(lines = 15): string {
    try {
      return readFileSync(this.logPath, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      // no log file: the process never started, which the caller's message already says
      return '';
    }
  }
}

/**
 * Whether util-linux's setpriv can give a child PR_SET_PDEATHSIG: then etcd and
 * kube-apiserver are killed by the kernel when the test process dies, even by
 * SIGKILL (a runner's timeout), when no exit handler runs.
 */
let pdeathsig: boolean | undefined;
export function withParentDeathSignal(bin: string, args: string[]): [string, string[]] {
  pdeathsig ??= spawnSync('setpriv', ['--pdeathsig', 'KILL', '--', 'true'], { stdio: 'ignore' }).status === 0;
  return pdeathsig ? ['setpriv', ['--pdeathsig', 'KILL', '--', bin, ...args]] : [bin, args];
}

function startProc(name: string, bin: string, args: string[], logPath: string): Proc {
  const fd = openSync(logPath, 'a');
  try {
    // setpriv execs the binary, so the child's pid is the binary's own.
    const child = spawn(...withParentDeathSignal(bin, args), { stdio: ['ignore', fd, fd] });
    return new Proc(name, child, logPath);
  } finally {
    closeSync(fd);
  }
}

function openssl(args: string[], cwd: string): void {
  const r = spawnSync('openssl', args, { cwd, encoding: 'utf8' });
  if (r.status !== 0) {
    throw new MeshdError('MESHD_KUBE_TEST_START_FAILED', `openssl ${args[0]} failed: ${r.error?.message ?? r.stderr.trim()}`, { kind: 'failed' });
  }
}

/** A CA, a serving certificate for 127.0.0.1/localhost signed by it, and the service-account signing key. */
function makeCredentials(dir: string): { ca: string; cert: string; key: string; saKey: string; saPub: string } {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl(['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=meshd-test-ca'], dir);
  openssl(['req', ...ec, '-keyout', 'apiserver.key', '-out', 'apiserver.csr', '-subj', '/CN=kube-apiserver'], dir);
  writeFileSync(
    join(dir, 'apiserver.ext'),
    'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\n' +
      'extendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\n',
  );
  openssl(['x509', '-req', '-in', 'apiserver.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-extfile', 'apiserver.ext', '-out', 'apiserver.crt'], dir);
  openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-out', 'sa.key'], dir);
  openssl(['pkey', '-in', 'sa.key', '-pubout', '-out', 'sa.pub'], dir);
  return { ca: join(dir, 'ca.crt'), cert: join(dir, 'apiserver.crt'), key: join(dir, 'apiserver.key'), saKey: join(dir, 'sa.key'), saPub: join(dir, 'sa.pub') };
}

/** GET a URL; resolves with the status and body, or null when nothing answered. */
function probe(url: string, opts: { ca?: Buffer; token?: string } = {}): Promise<{ status: number; body: string } | null> {
  return new Promise((resolve) => {
    const u = new URL(url);
    const headers = opts.token === undefined ? {} : { authorization: `Bearer ${opts.token}` };
    const send = u.protocol === 'https:' ? httpsRequest : httpRequest;
    const req = send(u, { method: 'GET', headers, ca: opts.ca, timeout: 2_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', () => resolve(null));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(null));
    req.end();
  });
}

async function waitReady(proc: Proc, what: string, timeoutMs: number, ready: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!proc.running) {
      throw new MeshdError('MESHD_KUBE_TEST_START_FAILED', `${proc.name} exited before ${what}; its log ends:\n${proc.logTail()}`, { kind: 'unavailable' });
    }
    if (await ready()) return;
    if (Date.now() > deadline) {
      throw new MeshdError('MESHD_KUBE_TEST_START_FAILED', `${proc.name}: no ${what} within ${timeoutMs} ms; its log ends:\n${proc.logTail()}`, { kind: 'unavailable' });
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * The controllers a test cluster runs: Deployment → ReplicaSet → Pod, Service →
 * EndpointSlice (and the mirror of hand-made Endpoints), the `default`
 * ServiceAccount of every namespace and its tokens, namespace deletion, and
 * garbage collection by owner references (a Deployment's deletion takes its
 * ReplicaSets and Pods).
 */
export const TEST_CONTROLLERS = [
  'deployment-controller',
  'replicaset-controller',
  'endpointslice-controller',
  'endpointslice-mirroring-controller',
  'serviceaccount-controller',
  'serviceaccount-token-controller',
  'root-ca-certificate-publisher-controller',
  'namespace-controller',
  'garbage-collector-controller',
] as const;

/**
 * Starts kube-controller-manager against the cluster (admin kubeconfig, the
 * service-account signing key the API server verifies with, no leader
 * election, no serving port) and waits until it works: the `default`
 * namespace's `default` ServiceAccount exists, which its serviceaccount
 * controller makes.
 */
async function startControllerManager(o: { bin: string; dir: string; kubeconfigPath: string; caPath: string; saKey: string; server: string; ca: Buffer; token: string; timeoutMs: number }): Promise<Proc> {
  const proc = startProc('kube-controller-manager', o.bin, [
    `--kubeconfig=${o.kubeconfigPath}`,
    `--controllers=${TEST_CONTROLLERS.join(',')}`,
    `--service-account-private-key-file=${o.saKey}`,
    `--root-ca-file=${o.caPath}`,
    '--leader-elect=false',
    // Nothing scrapes or probes it: its health is judged by its work below.
    '--secure-port=0',
    '--profiling=false',
    // A test's Pods come and go in seconds; the defaults batch EndpointSlice updates for up to 1 s.
    '--endpointslice-updates-batch-period=0s',
  ], join(o.dir, 'kube-controller-manager.log'));
  try {
    await waitReady(proc, "the default namespace's default ServiceAccount", o.timeoutMs, async () => {
      const r = await probe(`${o.server}/api/v1/namespaces/default/serviceaccounts/default`, { ca: o.ca, token: o.token });
      return r?.status === 200;
    });
  } catch (e) {
    await proc.stop();
    throw e;
  }
  return proc;
}

export async function startKubeCluster(opts: KubeClusterOptions = {}): Promise<KubeCluster> {
  const binDir = opts.binDir ?? kubeBinDir();
  const bin = (name: string) => join(binDir, name);
  const missing = ['etcd', 'kube-apiserver', 'kubectl', ...(opts.controllers === true ? ['kube-controller-manager'] : [])].filter((n) => spawnSync(bin(n), ['--help'], { stdio: 'ignore' }).error !== undefined);
  if (missing.length > 0) {
    throw new MeshdError('MESHD_KUBE_TEST_BINARIES_MISSING', `${missing.join(', ')} not found in ${binDir}; build them with: bash scripts/k8s-binaries.sh`, { kind: 'not-found' });
  }
  const timeoutMs = opts.readyTimeoutMs ?? 60_000;
  const dir = mkdtempSync(join(tmpdir(), `meshd-kube-${process.pid}-`));
  let etcd: Proc | null = null;
  let apiServer: Proc | null = null;
  let controllerManager: Proc | null = null;
  let closed = false;

  // If the test process exits without close() (a crash, process.exit), the children must not outlive it.
  const killOnExit = () => {
    for (const p of [controllerManager, apiServer, etcd]) if (p?.running) p.child.kill('SIGKILL');
  };
  process.on('exit', killOnExit);

  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    await controllerManager?.stop();
    await apiServer?.stop();
    await etcd?.stop();
    process.off('exit', killOnExit);
    rmSync(dir, { recursive: true, force: true });
  };
  opts.t?.after(close);

  try {
    const creds = makeCredentials(dir);
    const ca = readFileSync(creds.ca);
    const token = randomBytes(24).toString('hex');
    writeFileSync(join(dir, 'tokens.csv'), `${token},meshd-test-admin,meshd-test-admin,"system:masters"\n`, { mode: 0o600 });
    const [etcdClient, etcdPeer, apiPort] = [await freePort(), await freePort(), await freePort()];
    const server = `https://127.0.0.1:${apiPort}`;

    const etcdUrl = `http://127.0.0.1:${etcdClient}`;
    const peerUrl = `http://127.0.0.1:${etcdPeer}`;
    mkdirSync(join(dir, 'etcd'), { mode: 0o700 });
    etcd = startProc('etcd', bin('etcd'), [
      '--name=meshd-test',
      `--data-dir=${join(dir, 'etcd')}`,
      `--listen-client-urls=${etcdUrl}`,
      `--advertise-client-urls=${etcdUrl}`,
      `--listen-peer-urls=${peerUrl}`,
      `--initial-advertise-peer-urls=${peerUrl}`,
      `--initial-cluster=meshd-test=${peerUrl}`,
      // A test cluster's data need not survive a power loss; fsync would only slow every write.
      '--unsafe-no-fsync',
      '--log-level=warn',
    ], join(dir, 'etcd.log'));
    const etcdProc = etcd;
    await waitReady(etcdProc, 'healthy /health', timeoutMs, async () => {
      const r = await probe(`${etcdUrl}/health`);
      return r?.status === 200 && r.body.includes('"health":"true"');
    });

    const apiArgs = [
      `--etcd-servers=${etcdUrl}`,
      '--bind-address=127.0.0.1',
      `--secure-port=${apiPort}`,
      '--advertise-address=127.0.0.1',
      // The default reconciler writes the advertise address into the `kubernetes` Endpoints and
      // refuses a loopback one; nothing here routes to it anyway.
      '--endpoint-reconciler-type=none',
      `--tls-cert-file=${creds.cert}`,
      `--tls-private-key-file=${creds.key}`,
      `--token-auth-file=${join(dir, 'tokens.csv')}`,
      '--authorization-mode=RBAC',
      '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
      `--service-account-key-file=${creds.saPub}`,
      `--service-account-signing-key-file=${creds.saKey}`,
      '--service-cluster-ip-range=10.96.0.0/16',
      `--cert-dir=${join(dir, 'certs')}`,
      '--profiling=false',
      ...(opts.apiServerArgs ?? []),
    ];
    const startApi = async (): Promise<void> => {
      if (closed) throw new MeshdError('MESHD_KUBE_TEST_CLOSED', 'the cluster is closed', { kind: 'conflict' });
      if (apiServer?.running) return;
      const proc = startProc('kube-apiserver', bin('kube-apiserver'), apiArgs, join(dir, 'kube-apiserver.log'));
      apiServer = proc;
      await waitReady(proc, 'ok /readyz', timeoutMs, async () => {
        const r = await probe(`${server}/readyz`, { ca, token });
        return r?.status === 200;
      });
    };
    await startApi();

    const writeKubeconfig = (path: string, user: string, userToken: string): string => {
      writeFileSync(
        path,
        JSON.stringify({
          apiVersion: 'v1',
          kind: 'Config',
          clusters: [{ name: 'meshd-test', cluster: { server, 'certificate-authority-data': ca.toString('base64') } }],
          users: [{ name: user, user: { token: userToken } }],
          contexts: [{ name: 'meshd-test', context: { cluster: 'meshd-test', user } }],
          'current-context': 'meshd-test',
        }),
        { mode: 0o600 },
      );
      return path;
    };
    const kubeconfigPath = writeKubeconfig(join(dir, 'kubeconfig'), 'meshd-test-admin', token);

    const kubectl = (args: string[], o: { input?: string } = {}): Promise<KubectlResult> =>
      new Promise((resolve, reject) => {
        const child = spawn(bin('kubectl'), [`--kubeconfig=${kubeconfigPath}`, ...args], {
          stdio: ['pipe', 'pipe', 'pipe'],
          env: { ...process.env, KUBECONFIG: kubeconfigPath },
        });
        let stdout = '';
        let stderr = '';
        child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
        child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
        child.on('error', reject);
        child.on('close', (code, signal) => resolve({ stdout, stderr, code: code ?? (signal === null ? 1 : 128) }));
        child.stdin.end(o.input ?? '');
      });

    const apply = async (yamlOrObjects: string | object | object[]): Promise<string> => {
      const input =
        typeof yamlOrObjects === 'string'
          ? yamlOrObjects
          : JSON.stringify(Array.isArray(yamlOrObjects) ? { apiVersion: 'v1', kind: 'List', items: yamlOrObjects } : yamlOrObjects);
      const r = await kubectl(['apply', '-f', '-'], { input });
      if (r.code !== 0) {
        throw new MeshdError('MESHD_KUBE_TEST_KUBECTL_FAILED', `kubectl apply exited ${r.code}: ${r.stderr.trim()}`, { kind: 'failed' });
      }
      return r.stdout;
    };

    if (opts.controllers === true) {
      controllerManager = await startControllerManager({ bin: bin('kube-controller-manager'), dir, kubeconfigPath, caPath: creds.ca, saKey: creds.saKey, server, ca, token, timeoutMs });
    }
    const kcm = (): Proc | null => controllerManager;

    const cluster: KubeCluster = {
      kubeconfigPath,
      server,
      token,
      caPath: creds.ca,
      dir,
      kubectl,
      apply,
      ensureDefaultServiceAccount: async (namespace) => {
        await apply({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'default', namespace } });
      },
      serviceAccountKubeconfig: async (namespace, name) => {
        await apply({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name, namespace } });
        // A bound token from the TokenRequest API, as kubelet would mount into the pod.
        const r = await kubectl(['create', 'token', name, '-n', namespace, '--duration=1h']);
        if (r.code !== 0) {
          throw new MeshdError('MESHD_KUBE_TEST_KUBECTL_FAILED', `kubectl create token exited ${r.code}: ${r.stderr.trim()}`, { kind: 'failed' });
        }
        const saToken = r.stdout.trim();
        const path = writeKubeconfig(join(dir, `kubeconfig-${namespace}-${name}`), `system:serviceaccount:${namespace}:${name}`, saToken);
        return { kubeconfigPath: path, token: saToken };
      },
      stopApiServer: async () => {
        await apiServer?.stop();
      },
      startApiServer: startApi,
      pids: () => ({
        etcd: etcdProc.running ? (etcdProc.child.pid ?? null) : null,
        apiServer: apiServer?.running ? (apiServer.child.pid ?? null) : null,
      }),
      controllerManagerPid: () => {
        const p = kcm();
        return p?.running === true ? (p.child.pid ?? null) : null;
      },
      close,
    };
    return cluster;
  } catch (e) {
    await close();
    throw e;
  }
}

/** Applies every manifest of install/crds/ and install/rbac.yaml, and waits until the CRDs are served. */
export async function installMeshd(kube: KubeCluster): Promise<void> {
  const dir = repoPath('install', 'crds');
  const files = readdirSync(dir).filter((f) => f.endsWith('.yaml')).sort();
  for (const f of files) await kube.apply(readFileSync(join(dir, f), 'utf8'));
  const r = await kube.kubectl(['wait', '--for=condition=Established', '--timeout=30s', 'crd', '--all']);
  if (r.code !== 0) throw new MeshdError('MESHD_KUBE_TEST_KUBECTL_FAILED', `kubectl wait for the CRDs exited ${r.code}: ${r.stderr.trim()}`, { kind: 'failed' });
  await kube.apply(readFileSync(repoPath('install', 'rbac.yaml'), 'utf8'));
}
