/**
 * Delegation to another IPAM plugin (e.g. host-local) named by the
 * configuration's `ipam.type`, found in CNI_PATH and invoked the way a
 * runtime invokes a plugin: same CNI_* environment, the network
 * configuration on stdin, a Result or an error on stdout.
 *
 *   const bin = findPlugin('host-local', env.path);   // CniError 7 when absent
 *   const result = await execPlugin(bin, 'ADD', env, stdinText);
 */
import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { join } from 'node:path';
import * as z from 'zod';
import { CniCode, CniError, ResultSchema, describeIssues, type CniEnv, type CniResult } from './cni-spec.js';

const PluginErrorSchema = z.looseObject({ code: z.number().int(), msg: z.string(), details: z.string().optional() });

/** Absolute path of plugin `type` in the CNI_PATH directories. */
export function findPlugin(type: string, path: readonly string[]): string {
  if (type.includes('/') || type === '.' || type === '..') {
    throw new CniError(CniCode.INVALID_CONFIG, 'MESHD_CNI_BAD_CONFIG', `network configuration: ipam.type "${type}" is not a plugin name`);
  }
  for (const dir of path) {
    const candidate = join(dir, type);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not in this directory
    }
  }
  throw new CniError(
    CniCode.INVALID_CONFIG,
    'MESHD_CNI_UNKNOWN_IPAM',
    `network configuration: ipam.type "${type}" is unknown: no such plugin in CNI_PATH (${path.length > 0 ? path.join(':') : 'empty'})`,
  );
}

/**
 * Runs a delegated plugin. Resolves with its Result for ADD, undefined for
 * the other commands; a plugin error is rethrown as a CniError with the
 * plugin's own code and message, prefixed by the plugin's name.
 */
export function execPlugin(bin: string, command: 'ADD' | 'DEL' | 'CHECK', env: CniEnv, stdin: string): Promise<CniResult | undefined> {
  const name = bin.split('/').pop() ?? bin;
  return new Promise((resolve, reject) => {
    const child = spawn(bin, [], {
      env: {
        PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
        CNI_COMMAND: command,
        CNI_CONTAINERID: env.containerId,
        CNI_NETNS: env.netns,
        CNI_IFNAME: env.ifname,
        CNI_ARGS: Object.entries(env.args)
          .map(([k, v]) => `${k}=${v}`)
          .join(';'),
        CNI_PATH: env.path.join(':'),
      },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.on('error', (e) => reject(new CniError(CniCode.IO_FAILURE, 'MESHD_CNI_IPAM_EXEC', `IPAM plugin ${name}: ${e.message}`)));
    child.on('close', (code) => {
      const stdout = Buffer.concat(out).toString('utf8').trim();
      let raw: unknown = undefined;
      try {
        raw = stdout === '' ? undefined : JSON.parse(stdout);
      } catch {
        raw = undefined; // not JSON: the exit status below decides, and stdout goes into the message
      }
      if (code !== 0) {
        const pe = PluginErrorSchema.safeParse(raw);
        if (pe.success) {
          reject(new CniError(pe.data.code, 'MESHD_CNI_IPAM_FAILED', `IPAM plugin ${name} ${command}: ${pe.data.msg}`, pe.data.details));
        } else {
          const stderr = Buffer.concat(err).toString('utf8').trim();
          reject(new CniError(CniCode.IO_FAILURE, 'MESHD_CNI_IPAM_FAILED', `IPAM plugin ${name} ${command} exited ${code}: ${stderr || stdout}`));
        }
        return;
      }
      if (command !== 'ADD') {
        resolve(undefined);
        return;
      }
      const parsed = ResultSchema.safeParse(raw);
      if (!parsed.success) {
        reject(new CniError(CniCode.DECODE_FAILURE, 'MESHD_CNI_IPAM_FAILED', `IPAM plugin ${name} ADD: unexpected result: ${describeIssues(parsed.error)}`));
        return;
      }
      resolve(parsed.data);
    });
    child.stdin.end(stdin);
  });
}
