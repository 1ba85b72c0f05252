/**
 * The agent's record of the endpoints meshd-cni registered, persisted in the
 * state directory so that a restarted agent finds its pods again (the
 * runtime does not repeat ADD). Written atomically (temp file + rename).
 *
 * A registry file that does not parse is moved aside and reported
 * (MESHD_STATE_FILE_CORRUPT, see util/state-file.ts); the endpoints in it
 * that still parse are kept, so one damaged entry does not cost every pod
 * its datapath.
 *
 *   const reg = new EndpointRegistry(join(stateDir, 'endpoints.json'), { onCorrupt: (e) => log.warn(e.message) });
 */
import { z } from 'zod';
import { EndpointSchema, type Endpoint, type EndpointKey } from '../cni/endpoint-api.js';
import type { StateFileCorruptError} from '../util/state-file.js';
import { readStateFile, warnCorrupt, writeStateFile, type Salvage } from '../util/state-file.js';

const fileSchema = z.object({ version: z.literal(1), endpoints: z.array(EndpointSchema) });
type RegistryFile = z.infer<typeof fileSchema>;

/** The endpoints of a damaged file that still parse one by one. */
const salvageEndpoints: Salvage<RegistryFile> = (raw) => {
  const list = z.object({ endpoints: z.array(z.unknown()) }).safeParse(raw);
  if (!list.success) return undefined;
  const endpoints = list.data.endpoints.flatMap((e) => {
    const p = EndpointSchema.safeParse(e);
    return p.success ? [p.data] : [];
  });
  return { kept: { version: 1, endpoints }, dropped: list.data.endpoints.length - endpoints.length };
};

export const registryKey = (k: EndpointKey): string => `${k.containerId}/${k.ifname}`;

/** The policy engine's endpoint id for a registration: namespace/name (CNI_ARGS), or the container id. */
export function endpointIdOf(e: Endpoint): string {
  return `${e.k8s.namespace ?? 'default'}/${e.k8s.name ?? e.containerId.slice(0, 12)}`;
}

export class EndpointRegistry {
  private readonly byKey = new Map<string, Endpoint>();

  /**
   * Loads `file` (a missing file is an empty registry). A corrupt one is
   * moved aside and passed to `onCorrupt` (default: a warning on stderr);
   * what was salvaged is written back at once, so the next start reads a
   * good file. Read errors other than "missing" are thrown.
   */
  constructor(
    private readonly file: string,
    opts: { onCorrupt?: (e: StateFileCorruptError) => void } = {},
  ) {
    const r = readStateFile(file, fileSchema, salvageEndpoints);
    if (r.state === 'missing') return;
    const endpoints = r.state === 'ok' ? r.data.endpoints : (r.salvaged?.endpoints ?? []);
    for (const e of endpoints) this.byKey.set(registryKey(e), e);
    if (r.state === 'corrupt') {
      (opts.onCorrupt ?? warnCorrupt)(r.problem);
      this.save();
    }
  }

  all(): Endpoint[] {
    return [...this.byKey.values()];
  }

  get(k: EndpointKey): Endpoint | undefined {
    return this.byKey.get(registryKey(k));
  }

  byEndpointId(id: string): Endpoint | undefined {
    return this.all().find((e) => endpointIdOf(e) === id);
  }

  put(e: Endpoint): void {
    this.byKey.set(registryKey(e), e);
    this.save();
  }

  delete(k: EndpointKey): Endpoint | undefined {
    const e = this.byKey.get(registryKey(k));
    if (e) {
      this.byKey.delete(registryKey(k));
      this.save();
    }
    return e;
  }

  private save(): void {
    const content: RegistryFile = { version: 1, endpoints: this.all() };
    writeStateFile(this.file, content);
  }
}
