/**
 * A kafkajs client in a pod's network namespace, driven over stdin/stdout
 * (one JSON command per line, one JSON answer per line), for the datapath
 * tests: the test process cannot open sockets from another namespace.
 *
 *   {"id":1,"op":"produce","clientId":"order-service","topic":"orders","value":"o1"}
 *   {"id":2,"op":"consume","clientId":"order-service","topic":"order-events","groupId":"g","count":1}
 *   {"id":3,"op":"createTopics","clientId":"setup","topics":["orders"]}
 *   → {"id":1,"ok":true,"values":[…]} | {"id":1,"ok":false,"type":"TOPIC_AUTHORIZATION_FAILED","name":"…","message":"…"}
 *
 * Producers are kept per client ID, so successive produce commands use the same connections; a client
 * ID's first command fixes its SASL credentials (`"sasl":{"username":…,"password":…}`, mechanism PLAIN).
 * Started with the broker address as its argument; prints "ready".
 */
import { createInterface } from 'node:readline';
import { Kafka, logLevel, type Producer } from 'kafkajs';
import { z } from 'zod';

const commandSchema = z.object({
  id: z.number(),
  op: z.enum(['produce', 'consume', 'createTopics', 'connect']),
  clientId: z.string(),
  topic: z.string().optional(),
  topics: z.array(z.string()).optional(),
  value: z.string().optional(),
  groupId: z.string().optional(),
  count: z.number().optional(),
  sasl: z.object({ username: z.string(), password: z.string() }).optional(),
});

const broker = process.argv[2] ?? '';
const kafkas = new Map<string, Kafka>();
const producers = new Map<string, Producer>();
const kafka = (clientId: string, sasl?: { username: string; password: string }): Kafka => {
  let k = kafkas.get(clientId);
  if (!k) {
    k = new Kafka({
      clientId,
      brokers: [broker],
      logLevel: logLevel.NOTHING,
      retry: { retries: sasl ? 1 : 8, initialRetryTime: 100 },
      connectionTimeout: 5000,
      ...(sasl ? { sasl: { mechanism: 'plain' as const, ...sasl } } : {}),
    });
    kafkas.set(clientId, k);
  }
  return k;
};

function errorType(e: unknown): string | undefined {
  for (let x: unknown = e; typeof x === 'object' && x !== null; x = 'cause' in x ? x.cause : 'originalError' in x ? x.originalError : undefined) {
    if ('type' in x && typeof x.type === 'string') return x.type;
  }
  return undefined;
}

async function handle(c: z.infer<typeof commandSchema>): Promise<Record<string, unknown>> {
  const k = kafka(c.clientId, c.sasl);
  switch (c.op) {
    case 'createTopics': {
      const admin = k.admin();
      await admin.connect();
      await admin.createTopics({ topics: (c.topics ?? []).map((topic) => ({ topic })), waitForLeaders: true });
      await admin.disconnect();
      return {};
    }
    case 'connect':
    case 'produce': {
      let p = producers.get(c.clientId);
      if (!p) {
        p = k.producer();
        await p.connect();
        producers.set(c.clientId, p);
      }
      if (c.op === 'connect') return {};
      const r = await p.send({ topic: c.topic ?? '', messages: [{ value: c.value ?? '' }] });
      return { errorCode: r[0]?.errorCode };
    }
    case 'consume': {
      const consumer = k.consumer({ groupId: c.groupId ?? 'g' });
      await consumer.connect();
      await consumer.subscribe({ topic: c.topic ?? '', fromBeginning: true });
      const values: string[] = [];
      await new Promise<void>((resolve) => {
        void consumer.run({
          eachMessage: async ({ message }) => {
            values.push(message.value?.toString() ?? '');
            if (values.length >= (c.count ?? 1)) resolve();
          },
        });
      });
      await consumer.disconnect();
      return { values };
    }
  }
}

const rl = createInterface({ input: process.stdin });
rl.on('line', (line) => {
  const parsed = commandSchema.safeParse(JSON.parse(line));
  if (!parsed.success) {
    process.stdout.write(`${JSON.stringify({ id: -1, ok: false, message: parsed.error.message })}\n`);
    return;
  }
  const c = parsed.data;
  handle(c).then(
    (r) => process.stdout.write(`${JSON.stringify({ id: c.id, ok: true, ...r })}\n`),
    (e: unknown) => process.stdout.write(`${JSON.stringify({ id: c.id, ok: false, type: errorType(e), name: e instanceof Error ? e.name : 'unknown', message: e instanceof Error ? e.message : String(e) })}\n`),
  );
});
rl.on('close', () => {
  void Promise.all([...producers.values()].map((p) => p.disconnect().catch(() => undefined))).then(() => process.exit(0));
});
process.stdout.write('ready\n');
