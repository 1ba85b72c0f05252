/**
 * Prometheus metrics of the xDS server (prom-client). Each server owns a
 * registry unless one is passed in, so several servers in one process (tests,
 * benchmarks) never collide on metric names.
 */
import { Counter, Gauge, Registry } from 'prom-client';

export class XdsMetrics {
  readonly registry: Registry;
  readonly streams: Gauge<'mode'>;
  readonly requests: Counter<'type' | 'mode'>;
  readonly responses: Counter<'type' | 'mode'>;
  readonly acks: Counter<'type'>;
  readonly nacks: Counter<'type'>;
  readonly streamErrors: Counter<'code'>;
  readonly snapshots: Counter<'result'>;

  constructor(registry: Registry = new Registry()) {
    this.registry = registry;
    const registers = [registry];
    this.streams = new Gauge({ name: 'meshd_xds_streams', help: 'Open xDS streams', labelNames: ['mode'], registers });
    this.requests = new Counter({ name: 'meshd_xds_requests_total', help: 'Discovery requests received', labelNames: ['type', 'mode'], registers });
    this.responses = new Counter({ name: 'meshd_xds_responses_total', help: 'Discovery responses sent', labelNames: ['type', 'mode'], registers });
    this.acks = new Counter({ name: 'meshd_xds_acks_total', help: 'Responses ACKed by clients', labelNames: ['type'], registers });
    this.nacks = new Counter({ name: 'meshd_xds_nacks_total', help: 'Responses rejected (NACKed) by clients', labelNames: ['type'], registers });
    this.streamErrors = new Counter({ name: 'meshd_xds_stream_errors_total', help: 'Streams ended with an error status', labelNames: ['code'], registers });
    this.snapshots = new Counter({ name: 'meshd_xds_snapshots_total', help: 'Snapshots offered to the cache, by result', labelNames: ['result'], registers });
  }
}
