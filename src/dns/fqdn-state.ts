/**
 * The FQDN cache on disk (`<stateDir>/fqdn-cache.json`), so a restarted agent
 * restores every name → address it had learned before its first write: the
 * identities of those addresses, their ipcache entries and policy map
 * entries come back unchanged, and neither established connections nor new
 * ones to names resolved before the restart see a gap. Written atomically;
 * a file that does not parse is moved aside and reported, and the endpoints
 * whose entries still parse are kept.
 *
 *   const cache = openFqdnCache(file, { minTtlSeconds: 0 }, onCorrupt);
 *   saveFqdnCache(file, cache);
 */
import { isIP } from 'node:net';
import { z } from 'zod';
import { FqdnCache, type FqdnCacheDump, type FqdnCacheOptions } from '../policy/dns-cache.js';
import { readStateFile, type Salvage, type StateFileCorruptError, warnCorrupt, writeStateFile } from '../util/state-file.js';

const ipEntry = z.strictObject({
  ip: z.string().refine((s) => isIP(s) !== 0, 'expected an IP address'),
  ttl: z.number().int().min(0),
  learnedAt: z.number().int().min(0),
  expiresAt: z.number().int().min(0),
  source: z.enum(['dns', 'restored']),
  seq: z.number().int().min(0),
});
const endpointNames = z.record(z.string().min(1), z.array(ipEntry));
const fileSchema = z.strictObject({ version: z.literal(1), endpoints: z.record(z.string().min(1), endpointNames) });
type FqdnFile = z.infer<typeof fileSchema>;

const salvage: Salvage<FqdnFile> = (raw) => {
  const rec = z.object({ endpoints: z.record(z.string(), z.unknown()) }).safeParse(raw);
  if (!rec.success) return undefined;
  const entries = Object.entries(rec.data.endpoints);
  const kept = entries.flatMap(([k, v]) => {
    const p = endpointNames.safeParse(v);
    return p.success ? [[k, p.data] as const] : [];
  });
  return { kept: { version: 1, endpoints: Object.fromEntries(kept) }, dropped: entries.length - kept.length };
};

export function openFqdnCache(file: string, opts: FqdnCacheOptions, onCorrupt: (e: StateFileCorruptError) => void = warnCorrupt): FqdnCache {
  const cache = new FqdnCache(opts);
  const r = readStateFile(file, fileSchema, salvage);
  let dump: FqdnCacheDump = {};
  if (r.state === 'ok') dump = r.data.endpoints;
  if (r.state === 'corrupt') {
    onCorrupt(r.problem);
    dump = r.salvaged?.endpoints ?? {};
  }
  cache.restore(dump);
  if (r.state === 'corrupt') saveFqdnCache(file, cache);
  return cache;
}

export function saveFqdnCache(file: string, cache: FqdnCache): void {
  const value: FqdnFile = { version: 1, endpoints: cache.dump() };
  writeStateFile(file, value);
}
