/**
 * The agent's proxy half as a separate process (chaos-agent-peer.ts), for
 * SIGTERM and SIGKILL: started on a chaos world's state directory with the
 * world's current proxy input, it adopts the running Envoys and applies.
 *
 *   const a = await startAgentProcess(w);   // a.pids: the Envoys it found live
 *   a.child.kill('SIGKILL'); await a.exited;
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { repoPath } from '../../src/util/paths.js';
import type { L7World } from './l7-world.js';

const PEER_JS = repoPath('dist', 'test', 'helpers', 'chaos-agent-peer.js');

export interface AgentProcess {
  child: ChildProcess;
  /** Resolves with the exit code once it exited. */
  exited: Promise<number | null>;
  /** The Envoy pids that were live after its first apply. */
  pids: number[];
}

export async function startAgentProcess(w: L7World, replicas = 1): Promise<AgentProcess> {
  const inputFile = join(w.stateDir, 'proxy-input.json');
  const input = w.applyInput();
  writeFileSync(inputFile, JSON.stringify({ endpoints: input.endpoints, identityIps: [...input.identityIps] }));
  const opts = { nodeName: w.nodeName, stateDir: w.stateDir, pinDir: w.pinDir, portRange: w.portRange, routing: w.routing, replicas, inputFile };
  const child = spawn(process.execPath, [PEER_JS, JSON.stringify(opts)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  w.sb.defer(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  });
  const first = await Promise.race([createInterface({ input: child.stdout })[Symbol.asyncIterator]().next(), exited.then(() => ({ value: 'exited' }))]);
  const m = /^applied v\d+ ([\d,]+)$/.exec(String(first.value));
  assert.ok(m?.[1], `agent process: ${String(first.value)}`);
  return { child, exited, pids: m[1].split(',').map(Number) };
}
