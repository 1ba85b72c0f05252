/**
 * The probe program (bpf/probe.c): loads it, runs it once on a synthetic
 * packet with BPF_PROG_TEST_RUN, and reads back what it wrote to its map.
 * Used by `meshd doctor` and by the foundation test.
 */
import { native, openObject } from '../../native/index.js';
import { MeshdError } from '../util/errors.js';
import { bpfObjectPath } from '../util/paths.js';
import { Probe } from './abi.js';
import { defineStruct } from './codec.js';

/** Mirrors bpf/include/probe.h (enum from ./abi.js; the struct is checked against probe.o's BTF). */
export const MESHD_PROBE_MAGIC = Probe.MAGIC;
export const ProbeStats = defineStruct('meshd_probe_stats', [
  ['runs', 'u64'],
  ['last_len', 'u32'],
  ['magic', 'u32'],
] as const);

export interface ProbeResult {
  retval: number;
  runs: bigint;
  lastLen: number;
  magic: number;
}

/** An Ethernet + IPv4 + TCP SYN frame, enough for a tc program under test-run. */
export function syntheticFrame(len = 64): Buffer {
  const buf = Buffer.alloc(Math.max(len, 54));
  buf.writeUInt16BE(0x0800, 12); // ETH_P_IP
  buf.writeUInt8(0x45, 14); // version 4, IHL 5
  buf.writeUInt16BE(buf.length - 14, 16);
  buf.writeUInt8(64, 22); // TTL
  buf.writeUInt8(6, 23); // TCP
  buf.writeUInt32BE(0x7f000001, 26);
  buf.writeUInt32BE(0x7f000001, 30);
  buf.writeUInt16BE(40000, 34);
  buf.writeUInt16BE(80, 36);
  buf.writeUInt8(0x50, 46); // data offset 5
  buf.writeUInt8(0x02, 47); // SYN
  return buf;
}

/** probe.o is not what this build expects (stale or foreign object): rebuild bpf/. */
function probeInvalid(message: string): MeshdError {
  return new MeshdError('MESHD_PROBE_OBJECT_INVALID', message);
}

export async function runProbe(repeat = 1, frameLen = 64): Promise<ProbeResult> {
  const obj = openObject(bpfObjectPath('probe'));
  try {
    await obj.load();
    const prog = obj.programs().find((p) => p.name === 'meshd_probe');
    const map = obj.maps().find((m) => m.name === 'meshd_probe_stats');
    if (!prog || !map) throw probeInvalid('probe.o: program meshd_probe or map meshd_probe_stats missing');
    if (map.valueSize !== ProbeStats.size) {
      throw probeInvalid(`probe.o: meshd_probe_stats value is ${map.valueSize} bytes, codec says ${ProbeStats.size}`);
    }
    const run = native.progTestRun(prog.fd, syntheticFrame(frameLen), { repeat });
    const key = Buffer.alloc(4);
    const raw = native.mapLookup(map.fd, key, map.valueSize);
    if (!raw) throw probeInvalid('probe.o: map entry 0 missing after test run');
    const st = ProbeStats.decode(raw);
    return { retval: run.retval, runs: st.runs, lastLen: st.last_len, magic: st.magic };
  } finally {
    obj.close();
  }
}
