import { test } from 'node:test';
import { TRANSPORTS, envoyBehaviour } from './xds-behavior.js';

for (const transport of TRANSPORTS) {
  test(`xDS sotw over ${transport.name}: a real Envoy gets config, serves traffic, updates without dropping connections, NACKs and recovers`, async (t) => {
    await envoyBehaviour(t, 'sotw', transport);
  });
}
