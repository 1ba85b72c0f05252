/**
 * The agent's record of the endpoints meshd-cni registered, persisted in the
 * state directory so that a restarted agent finds its pods again (the
 * runtime does not repeat ADD). Written atomically (temp file + rename).
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { z } from 'zod';
import { EndpointSchema, type Endpoint, type EndpointKey } from '../cni/endpoint-api.js';

const fileSchema = z.object({ version: z.literal(1), endpoints: z.array(EndpointSchema) });

export const registryKey = (k: EndpointKey): string => `${k.containerId}/${k.ifname}`;

/** The policy engine's endpoint id for a registration: namespace/name (CNI_ARGS), or the container id. */
export function endpointIdOf(e: Endpoint): string {
  return `${e.k8s.namespace ?? 'default'}/${e.k8s.name ?? e.containerId.slice(0, 12)}`;
}

export class EndpointRegistry {
  private readonly byKey = new Map<string, Endpoint>();

  constructor(private readonly file: string) {
    let raw: string | undefined;
    try {
      raw = readFileSync(file, 'utf8');
    } catch {
      return;
    }
    const parsed = fileSchema.safeParse(JSON.parse(raw));
    if (!parsed.success) throw new Error(`${file}: not a meshd endpoint registry (${parsed.error.issues[0]?.path.join('.') ?? ''}: ${parsed.error.issues[0]?.message ?? ''})`);
    for (const e of parsed.data.endpoints) this.byKey.set(registryKey(e), e);
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
    mkdirSync(dirname(this.file), { recursive: true, mode: 0o700 });
    const tmp = `${this.file}.tmp-${process.pid}`;
    writeFileSync(tmp, JSON.stringify({ version: 1, endpoints: this.all() }, null, 2), { mode: 0o600 });
    renameSync(tmp, this.file);
  }
}
