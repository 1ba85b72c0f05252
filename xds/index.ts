/**
 * meshd's xDS control plane, usable on its own: a snapshot cache, SotW and
 * delta stream handlers, and a gRPC server for ADS and the per-type services.
 *
 *   import { XdsServer, TYPE_URL } from './xds/index.js';
 *   const server = new XdsServer();
 *   await server.listen('unix:/run/meshd/xds.sock');
 *   server.setSnapshot('node-1', { version: 'v1', resources: { clusters: [{ '@type': TYPE_URL.clusters, … }] } });
 *   await server.waitForAck('node-1', 'v1', { kinds: ['listeners'] });
 *
 * Nothing here imports from the agent (src/).
 */
export { AckTracker, type NodeStatus, type ResponseInfo, type TypeStatus } from './ack-tracker.js';
export { SnapshotCache, type CachedSnapshot, type SnapshotCacheOptions } from './cache.js';
export { XdsError, isXdsError, type XdsErrorCode } from './errors.js';
export { DEFAULT_LISTEN, parseListenAddress, type ListenAddress } from './listen.js';
export { MemoryLogger, stderrLogger, type LogFields, type XdsLogger } from './log.js';
export { deltaCodec, sotwCodec, type DeltaDiscoveryRequest, type DeltaDiscoveryResponse, type DiscoveryRequest, type DiscoveryResponse } from './messages.js';
export { XdsMetrics } from './metrics.js';
export { protoIncludeDirs, skippedProtoFiles, xdsProtos } from './protos.js';
export { ResourceCodec, contentVersion, type AnyMessage } from './resource-codec.js';
export { XdsServer, type BoundAddress, type WaitForAckOptions, type XdsServerOptions } from './server.js';
export { buildSnapshot, checkConsistency, consistencyProblems, snapshotCounts, type Snapshot, type SnapshotInput, type SnapshotResource } from './snapshot.js';
export { loadSnapshotFile, watchSnapshotFile } from './snapshot-file.js';
export { DeltaStream } from './stream-delta.js';
export { SotwStream } from './stream-sotw.js';
export type { ResponseSink, StreamFailure, StreamOptions } from './stream.js';
export { KIND_ORDER, TYPE_URL, kindOf, type ResourceKind, type TypeUrl } from './type-urls.js';
export type { Cancel, NodeInfo, WatchSource } from './watch.js';
