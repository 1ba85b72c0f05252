/**
 * L7 matchers with Cilium's semantics, used by validation (to reject what
 * would not compile) and by `meshd policy trace` (to answer for a request).
 * The proxy enforces the same rules in Envoy; these are the reference.
 *
 * - HTTP method/path/host: extended regular expressions matched against the
 *   whole value (anchored). Headers: "Name" = present, "Name: value" = equal.
 *   headerMatches without `mismatch` must match; with one, a mismatch is an
 *   action (log/add/...) and never denies.
 * - DNS matchName: exact, case-insensitive, trailing dot ignored.
 *   matchPattern: "*" alone matches every name; a leading "**." one or more
 *   whole labels; elsewhere "*" matches zero or more characters of one label
 *   ([-a-zA-Z0-9_]). The DNS proxy (src/dns) enforces exactly these.
 * - TLS serverNames: the same patterns as DNS matchPattern (Cilium's
 *   ServerName), against the ClientHello's SNI, case-insensitive; a rule
 *   without serverNames allows any connection, one with them needs TLS with
 *   a matching SNI (no SNI: denied).
 * - Kafka: role produce/consume expands to the API keys it needs (produce
 *   also allows InitProducerId without a transactional ID); clientID
 *   and apiVersion must equal when set; topic must equal when both the rule
 *   and the request name one.
 */
import { MeshdError } from '../util/errors.js';
import type { DnsRule, HttpRule, KafkaRule, TlsRule } from './types.js';

export interface HttpRequest {
  method?: string;
  path?: string;
  host?: string;
  headers?: Record<string, string>;
}

export interface KafkaRequest {
  apiKey: string;
  apiVersion?: string | number;
  clientID?: string;
  topic?: string;
  /** InitProducerId: the transactional ID; absent or null = an idempotent, non-transactional producer. */
  transactionalID?: string | null;
}

export interface DnsRequest {
  name: string;
}

/**
 * MESHD_POLICY_REGEX_UNSUPPORTED: a construct RE2 lacks;
 * MESHD_POLICY_REGEX_INVALID: not a regular expression at all (the engine's
 * SyntaxError is the cause).
 */
export class PolicyRegexError extends MeshdError {
  constructor(code: 'MESHD_POLICY_REGEX_UNSUPPORTED' | 'MESHD_POLICY_REGEX_INVALID', message: string, cause?: unknown) {
    super(code, message, { kind: 'invalid', cause });
  }
}

/**
 * Compiles a policy regex anchored at both ends; throws PolicyRegexError
 * when invalid. Policies are written for RE2 (Envoy enforces them with RE2),
 * so constructs RE2 lacks — lookaround and backreferences — are refused even
 * though JavaScript has them, and RE2's leading `(?i)` becomes the `i` flag.
 */
export function compileFullMatch(re: string): RegExp {
  if (/\(\?<?[=!]/.test(re)) throw new PolicyRegexError('MESHD_POLICY_REGEX_UNSUPPORTED', 'lookaround assertions are not supported (RE2)');
  if (/\\[1-9]|\\k</.test(re)) throw new PolicyRegexError('MESHD_POLICY_REGEX_UNSUPPORTED', 'backreferences are not supported (RE2)');
  const ci = re.startsWith('(?i)');
  try {
    return new RegExp(`^(?:${ci ? re.slice(4) : re})$`, ci ? 'i' : '');
  } catch (e) {
    throw new PolicyRegexError('MESHD_POLICY_REGEX_INVALID', e instanceof Error ? e.message : String(e), e);
  }
}

/** Compiled rule regexes; cleared when full, so policy churn (new paths every edit) cannot grow it without bound. */
const regexCache = new Map<string, RegExp>();
const REGEX_CACHE_MAX = 10_000;
function fullMatch(re: string, value: string): boolean {
  let r = regexCache.get(re);
  if (!r) {
    r = compileFullMatch(re);
    if (regexCache.size >= REGEX_CACHE_MAX) regexCache.clear();
    regexCache.set(re, r);
  }
  return r.test(value);
}

export function matchHttp(rule: HttpRule, req: HttpRequest): boolean {
  if (rule.method !== undefined && !fullMatch(rule.method, req.method ?? '')) return false;
  if (rule.path !== undefined && !fullMatch(rule.path, req.path ?? '')) return false;
  if (rule.host !== undefined && !fullMatch(rule.host, req.host ?? '')) return false;
  const headers = new Map<string, string>();
  for (const [k, v] of Object.entries(req.headers ?? {})) headers.set(k.toLowerCase(), v);
  for (const h of rule.headers ?? []) {
    const have = headers.get(h.name.toLowerCase());
    if (have === undefined) return false;
    if (h.value !== undefined && have !== h.value) return false;
  }
  for (const h of rule.headerMatches ?? []) {
    if (h.mismatch !== undefined) continue;
    const have = headers.get(h.name.toLowerCase());
    if (have === undefined) return false;
    if (h.value !== undefined && have !== h.value) return false;
  }
  return true;
}

/** Splits "Name: value" / "Name" header rules into objects. */
export function parseHeaderRule(text: string): { name: string; value?: string } {
  const i = text.indexOf(':');
  if (i < 0) return { name: text.trim() };
  return { name: text.slice(0, i).trim(), value: text.slice(i + 1).trim() };
}

/**
 * Kafka API keys by name: Cilium's names for 0–33 (`offsets` is ListOffsets), then every later API
 * of Kafka 4.x by its Kafka name in lower case, as Cilium writes names (Apache Kafka 4.4's
 * clients/src/main/resources/common/message/*Request.json).
 */
export const KAFKA_API_KEYS: Record<string, number> = {
  produce: 0,
  fetch: 1,
  offsets: 2,
  metadata: 3,
  leaderandisr: 4,
  stopreplica: 5,
  updatemetadata: 6,
  controlledshutdown: 7,
  offsetcommit: 8,
  offsetfetch: 9,
  findcoordinator: 10,
  joingroup: 11,
  heartbeat: 12,
  leavegroup: 13,
  syncgroup: 14,
  describegroups: 15,
  listgroups: 16,
  saslhandshake: 17,
  apiversions: 18,
  createtopics: 19,
  deletetopics: 20,
  deleterecords: 21,
  initproducerid: 22,
  offsetforleaderepoch: 23,
  addpartitionstotxn: 24,
  addoffsetstotxn: 25,
  endtxn: 26,
  writetxnmarkers: 27,
  txnoffsetcommit: 28,
  describeacls: 29,
  createacls: 30,
  deleteacls: 31,
  describeconfigs: 32,
  alterconfigs: 33,
  alterreplicalogdirs: 34,
  describelogdirs: 35,
  saslauthenticate: 36,
  createpartitions: 37,
  createdelegationtoken: 38,
  renewdelegationtoken: 39,
  expiredelegationtoken: 40,
  describedelegationtoken: 41,
  deletegroups: 42,
  electleaders: 43,
  incrementalalterconfigs: 44,
  alterpartitionreassignments: 45,
  listpartitionreassignments: 46,
  offsetdelete: 47,
  describeclientquotas: 48,
  alterclientquotas: 49,
  describeuserscramcredentials: 50,
  alteruserscramcredentials: 51,
  vote: 52,
  beginquorumepoch: 53,
  endquorumepoch: 54,
  describequorum: 55,
  alterpartition: 56,
  updatefeatures: 57,
  envelope: 58,
  fetchsnapshot: 59,
  describecluster: 60,
  describeproducers: 61,
  brokerregistration: 62,
  brokerheartbeat: 63,
  unregisterbroker: 64,
  describetransactions: 65,
  listtransactions: 66,
  allocateproducerids: 67,
  consumergroupheartbeat: 68,
  consumergroupdescribe: 69,
  controllerregistration: 70,
  gettelemetrysubscriptions: 71,
  pushtelemetry: 72,
  assignreplicastodirs: 73,
  listconfigresources: 74,
  describetopicpartitions: 75,
  sharegroupheartbeat: 76,
  sharegroupdescribe: 77,
  sharefetch: 78,
  shareacknowledge: 79,
  addraftvoter: 80,
  removeraftvoter: 81,
  updateraftvoter: 82,
  initializesharegroupstate: 83,
  readsharegroupstate: 84,
  writesharegroupstate: 85,
  deletesharegroupstate: 86,
  readsharegroupstatesummary: 87,
  streamsgroupheartbeat: 88,
  streamsgroupdescribe: 89,
  describesharegroupoffsets: 90,
  altersharegroupoffsets: 91,
  deletesharegroupoffsets: 92,
  streamsgrouptopologydescriptionupdate: 93,
  unregistercontroller: 94,
};

/**
 * The widest port range Kafka rules may use: the proxy matches one port per filter chain (Envoy's
 * filter_chain_match has no ranges), so a range becomes one chain per port.
 */
export const KAFKA_MAX_RANGE_PORTS = 64;

const ROLE_KEYS: Record<'produce' | 'consume', string[]> = {
  produce: ['produce', 'metadata', 'apiversions'],
  consume: [
    'fetch',
    'offsets',
    'metadata',
    'offsetcommit',
    'offsetfetch',
    'findcoordinator',
    'joingroup',
    'heartbeat',
    'leavegroup',
    'syncgroup',
    'apiversions',
  ],
};

/**
 * Whether `role` allows API `key`. Beyond Cilium's sets, `produce` allows InitProducerId without a
 * transactional ID: Kafka's Java producer is idempotent by default and asks for a producer ID
 * before its first Produce (the broker authorizes that as an idempotent write, which WRITE on a
 * topic already implies). A transactional ID stays refused unless a rule's apiKey names it.
 */
function roleAllows(role: 'produce' | 'consume', key: string, req: KafkaRequest): boolean {
  if (role === 'produce' && key === 'initproducerid') return req.transactionalID === undefined || req.transactionalID === null;
  return ROLE_KEYS[role].includes(key);
}

export function matchKafka(rule: KafkaRule, req: KafkaRequest): boolean {
  const key = req.apiKey.toLowerCase();
  if (rule.role !== undefined && !roleAllows(rule.role, key, req)) return false;
  if (rule.apiKey !== undefined && rule.apiKey.toLowerCase() !== key) return false;
  if (rule.apiVersion !== undefined && String(req.apiVersion ?? '') !== rule.apiVersion) return false;
  if (rule.clientID !== undefined && rule.clientID !== '' && req.clientID !== rule.clientID) return false;
  // Requests that carry no topic (joingroup, heartbeat, …) are not constrained by the topic, as in Cilium.
  if (rule.topic !== undefined && rule.topic !== '' && req.topic !== undefined && req.topic !== rule.topic) return false;
  return true;
}

const DNS_NAME = /^[-a-zA-Z0-9_.]+$/;
const DNS_PATTERN = /^[-a-zA-Z0-9_.*]+$/;

export function normaliseDnsName(name: string): string {
  const n = name.toLowerCase();
  return n.endsWith('.') ? n.slice(0, -1) : n;
}

export function isValidDnsName(name: string): boolean {
  return DNS_NAME.test(name) && name.length <= 255;
}

export function isValidDnsPattern(pattern: string): boolean {
  return DNS_PATTERN.test(pattern) && pattern.length <= 255;
}

/**
 * Regex for a Cilium matchPattern (as pkg/fqdn/matchpattern in Cilium 1.20): a pattern of stars
 * alone (`*`, `**`, `**.`) matches every name; a leading `**.` (two or more stars and a dot) stands
 * for one or more whole labels (`**.example.com` matches `a.example.com` and `a.b.example.com`,
 * not `example.com`); any other `*` matches zero or more characters within one label.
 */
export function dnsPatternRegExp(pattern: string): RegExp {
  const p = normaliseDnsName(pattern.trim());
  if (/^\*+\.?$/.test(p)) return /^.+$/;
  const sub = /^\*{2,}\./.exec(p);
  const rest = sub ? p.slice(sub[0].length) : p;
  const body = rest
    .split(/\*+/)
    .map((part) => part.replace(/[.\-_]/g, (c) => `\\${c}`))
    .join('[-a-zA-Z0-9_]*');
  return new RegExp(`^${sub ? '[-a-zA-Z0-9_]+(?:\\.[-a-zA-Z0-9_]+)*\\.' : ''}${body}$`);
}

const patternCache = new Map<string, RegExp>();

export function matchDnsSelector(sel: DnsRule, name: string): boolean {
  const n = normaliseDnsName(name);
  if (sel.matchName !== undefined && normaliseDnsName(sel.matchName) === n) return true;
  if (sel.matchPattern !== undefined) {
    let re = patternCache.get(sel.matchPattern);
    if (!re) {
      re = dnsPatternRegExp(sel.matchPattern);
      if (patternCache.size > 10_000) patternCache.clear();
      patternCache.set(sel.matchPattern, re);
    }
    if (re.test(n)) return true;
  }
  return false;
}

/**
 * True when a connection whose ClientHello named `sni` (undefined: no SNI, or not TLS) passes the
 * rule; an intercepting rule also needs the request (`http`, undefined: not known) to match one of
 * its HTTP rules (none: any request).
 */
export function matchTls(rule: TlsRule, sni: string | undefined, http?: HttpRequest): boolean {
  if (rule.serverNames !== undefined && rule.serverNames.length > 0) {
    if (sni === undefined || sni === '') return false;
    if (!rule.serverNames.some((p) => matchDnsSelector({ matchPattern: p }, sni))) return false;
  }
  if (rule.terminating && rule.http && rule.http.length > 0 && http) return rule.http.some((h) => matchHttp(h, http));
  return true;
}

/**
 * The RE2 expression (full match, case-insensitive) Envoy matches the SNI against for one
 * serverNames pattern: the same expression matchTls uses, so proxy and trace agree.
 */
export function serverNameRegex(pattern: string): string {
  const src = dnsPatternRegExp(pattern).source;
  return `(?i)${src.slice(1, -1)}`;
}
