/**
 * A minimal container runtime for meshd-cni (tests and the development
 * cluster's kubelet): runs plugin executables exactly
 * as containerd/CRI-O do (CNI_* environment, configuration on stdin, result
 * or error JSON on stdout) and walks a conflist the way libcni does (ADD in
 * order threading prevResult, DEL in reverse order with the cached result,
 * CHECK in order).
 *
 *   const rt = new CniRuntime([binDir, '/usr/lib/cni']);
 *   const res = await rt.exec('meshd-cni', 'ADD', { containerId: 'c1', netns, ifname: 'eth0' }, conf);
 *   const result = await rt.addList(conflist, att);  await rt.delList(conflist, att);
 */
import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { join } from 'node:path';
import { ResultSchema, describeIssues, type CniResult } from '../cni/cni-spec.js';

export interface Attachment {
  containerId: string;
  netns: string;
  ifname: string;
  /** CNI_ARGS pairs. */
  args?: Record<string, string>;
}

export interface ExecResult {
  code: number | null;
  stdout: string;
  stderr: string;
  /** stdout parsed as JSON, or undefined when empty or not JSON. */
  json: Record<string, unknown> | undefined;
  ms: number;
}

export type PluginConf = Record<string, unknown> & { type: string };
export interface Conflist {
  cniVersion: string;
  name: string;
  plugins: PluginConf[];
}

export class CniRuntime {
  /** Cached ADD results, as libcni keeps them, keyed by container/ifname. */
  private readonly cache = new Map<string, Record<string, unknown>>();

  constructor(
    readonly path: string[],
    private readonly extraEnv: Record<string, string> = {},
  ) {}

  find(type: string): string {
    for (const d of this.path) {
      try {
        accessSync(join(d, type), constants.X_OK);
        return join(d, type);
      } catch {
        // next
      }
    }
    throw new Error(`plugin ${type} not in ${this.path.join(':')}`);
  }

  /** Runs one plugin. `env` overrides or removes (undefined) CNI_* variables. */
  exec(
    type: string,
    command: string,
    att: Partial<Attachment>,
    stdin: string | Record<string, unknown>,
    env: Record<string, string | undefined> = {},
  ): Promise<ExecResult> {
    const bin = this.find(type);
    const full: Record<string, string> = { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', ...this.extraEnv };
    const base: Record<string, string | undefined> = {
      CNI_COMMAND: command,
      CNI_CONTAINERID: att.containerId,
      CNI_NETNS: att.netns,
      CNI_IFNAME: att.ifname,
      CNI_ARGS: att.args
        ? Object.entries(att.args)
            .map(([k, v]) => `${k}=${v}`)
            .join(';')
        : undefined,
      CNI_PATH: this.path.join(':'),
      ...env,
    };
    for (const [k, v] of Object.entries(base)) if (v !== undefined) full[k] = v;
    const input = typeof stdin === 'string' ? stdin : JSON.stringify(stdin);
    const started = performance.now();
    return new Promise((resolve, reject) => {
      const child = spawn(bin, [], { env: full, stdio: ['pipe', 'pipe', 'pipe'] });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout.on('data', (c: Buffer) => out.push(c));
      child.stderr.on('data', (c: Buffer) => err.push(c));
      child.on('error', reject);
      child.on('close', (code) => {
        const stdout = Buffer.concat(out).toString('utf8');
        let json: Record<string, unknown> | undefined;
        try {
          const v: unknown = JSON.parse(stdout);
          if (typeof v === 'object' && v !== null && !Array.isArray(v)) json = Object.fromEntries(Object.entries(v));
        } catch {
          json = undefined;
        }
        resolve({ code, stdout, stderr: Buffer.concat(err).toString('utf8'), json, ms: performance.now() - started });
      });
      child.stdin.end(input);
    });
  }

  private pluginConf(list: Conflist, p: PluginConf, prev: Record<string, unknown> | undefined, runtimeConfig?: Record<string, unknown>) {
    const conf: Record<string, unknown> = { ...p, cniVersion: list.cniVersion, name: list.name };
    if (prev) conf.prevResult = prev;
    const caps = p.capabilities;
    if (runtimeConfig && typeof caps === 'object' && caps !== null) {
      const rc: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(caps)) if (v === true && k in runtimeConfig) rc[k] = runtimeConfig[k];
      if (Object.keys(rc).length > 0) conf.runtimeConfig = rc;
    }
    return conf;
  }

  private static key(list: Conflist, att: Attachment): string {
    return `${list.name}/${att.containerId}/${att.ifname}`;
  }

  /** ADD through the list; throws with the failing plugin's output. */
  async addList(list: Conflist, att: Attachment, runtimeConfig?: Record<string, unknown>): Promise<Record<string, unknown>> {
    let prev: Record<string, unknown> | undefined;
    for (const p of list.plugins) {
      const r = await this.exec(p.type, 'ADD', att, this.pluginConf(list, p, prev, runtimeConfig));
      if (r.code !== 0 || !r.json) throw new Error(`ADD ${p.type} failed (${r.code}): ${r.stdout} ${r.stderr}`);
      prev = r.json;
    }
    if (!prev) throw new Error('empty conflist');
    this.cache.set(CniRuntime.key(list, att), prev);
    return prev;
  }

  async delList(list: Conflist, att: Attachment, runtimeConfig?: Record<string, unknown>): Promise<void> {
    const prev = this.cache.get(CniRuntime.key(list, att));
    for (const p of [...list.plugins].reverse()) {
      const r = await this.exec(p.type, 'DEL', att, this.pluginConf(list, p, prev, runtimeConfig));
      if (r.code !== 0) throw new Error(`DEL ${p.type} failed (${r.code}): ${r.stdout} ${r.stderr}`);
    }
    this.cache.delete(CniRuntime.key(list, att));
  }

  async checkList(list: Conflist, att: Attachment, runtimeConfig?: Record<string, unknown>): Promise<void> {
    const prev = this.cache.get(CniRuntime.key(list, att));
    for (const p of list.plugins) {
      const r = await this.exec(p.type, 'CHECK', att, this.pluginConf(list, p, prev, runtimeConfig));
      if (r.code !== 0) throw new Error(`CHECK ${p.type} failed (${r.code}): ${r.stdout} ${r.stderr}`);
    }
  }
}

/** A plugin's stdout validated as a CNI Result (fails the test with the field path otherwise). */
export function asResult(json: unknown): CniResult {
  const r = ResultSchema.safeParse(json);
  if (!r.success) throw new Error(`not a CNI result: ${describeIssues(r.error)}: ${JSON.stringify(json)}`);
  return r.data;
}

/** The host-side interface (no sandbox) of a result. */
export function hostSide(json: unknown): string {
  return asResult(json).interfaces?.find((i) => (i.sandbox ?? '') === '')?.name ?? '';
}

/** The first address of a result, CIDR notation. */
export function firstAddress(json: unknown): string {
  return asResult(json).ips?.[0]?.address ?? '';
}
