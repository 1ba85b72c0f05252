/**
 * The one argument parser of every `meshd` command: node's `parseArgs`
 * tokens, checked the same way everywhere.
 *
 *   export const list = command(
 *     { name: 'lb list', summary: 'the frontends the socket LB holds', output: true,
 *       options: { 'pin-dir': { type: 'string', value: 'DIR', help: 'bpffs directory of the pins' } } },
 *     async (args, io) => { const dir = args.string('pin-dir') ?? DEFAULT; … io.out(args.format(data, () => text)); return 0; },
 *   );
 *
 * Every command gets `-h/--help`; commands that print data get
 * `-o/--output text|json|yaml`; commands that ask the agent get
 * `--api-socket PATH`. An unknown option, a missing value, a value given to a
 * flag, or a wrong number of arguments is a UsageError (MESHD_CLI_USAGE,
 * exit status 2) that names the option and where to find the help.
 */
import { parseArgs } from 'node:util';
import { MeshdError } from '../util/errors.js';
import { formatOutput, isOutputFormat, OUTPUT_FORMATS, type OutputFormat } from './output.js';

export class UsageError extends MeshdError {
  constructor(message: string) {
    super('MESHD_CLI_USAGE', message, { kind: 'usage' });
  }
}

/** Where a command writes; main passes the process's streams, tests pass buffers. */
export interface CliIo {
  out(text: string): void;
  err(text: string): void;
}

export const processIo: CliIo = {
  out: (t) => void process.stdout.write(t),
  err: (t) => void process.stderr.write(t),
};

export interface OptionSpec {
  type: 'string' | 'boolean';
  short?: string;
  /** A string option given more than once collects every value. */
  multiple?: boolean;
  /** The value's placeholder in the help, e.g. DIR. */
  value?: string;
  help: string;
  /** Accepted but not listed one by one in the help (meshd agent's configuration keys). */
  hidden?: boolean;
}

export type OptionSpecs = Readonly<Record<string, OptionSpec>>;

export interface CommandSpec<O extends OptionSpecs = OptionSpecs> {
  /** The words after `meshd`, e.g. "lb list". */
  name: string;
  summary: string;
  /** The positional arguments in the usage line, e.g. "ID" or "FILE|DIR...". */
  args?: string;
  /** How many positional arguments (default none). */
  positionals?: { min: number; max: number };
  options: O;
  /** Adds -o/--output text|json|yaml. */
  output?: boolean;
  /** Adds --api-socket PATH (the running agent's local API). */
  agent?: boolean;
  /** Lines printed after the options in the help. */
  notes?: readonly string[];
}

export const DEFAULT_API_SOCKET = '/var/run/meshd/meshd.sock';

const HELP: OptionSpec = { type: 'boolean', short: 'h', help: 'show this help' };
const OUTPUT: OptionSpec = { type: 'string', short: 'o', value: 'FORMAT', help: `output format: ${OUTPUT_FORMATS.join(', ')} (default text)` };
const API_SOCKET: OptionSpec = { type: 'string', value: 'PATH', help: `the agent's local API socket (default $MESHD_API_SOCKET or ${DEFAULT_API_SOCKET})` };

function allOptions(spec: CommandSpec): Record<string, OptionSpec> {
  return { ...spec.options, ...(spec.output ? { output: OUTPUT } : {}), ...(spec.agent ? { 'api-socket': API_SOCKET } : {}), help: HELP };
}

type NamesOf<O extends OptionSpecs, T extends OptionSpec['type'], M extends boolean> = {
  [K in keyof O & string]: O[K]['type'] extends T ? (O[K]['multiple'] extends true ? (M extends true ? K : never) : M extends true ? never : K) : never;
}[keyof O & string];

/** A command line parsed against its spec; options are read by name, typed by the spec. */
export class ParsedArgs<O extends OptionSpecs> {
  constructor(
    private readonly values: ReadonlyMap<string, string | boolean | string[]>,
    readonly positionals: readonly string[],
    readonly output: OutputFormat,
    /** The agent's socket (commands with `agent: true`). */
    readonly apiSocket: string,
  ) {}

  string(name: NamesOf<O, 'string', false>): string | undefined {
    const v = this.values.get(name);
    return typeof v === 'string' ? v : undefined;
  }

  strings(name: NamesOf<O, 'string', true>): string[] {
    const v = this.values.get(name);
    return Array.isArray(v) ? v : [];
  }

  flag(name: NamesOf<O, 'boolean', false>): boolean {
    return this.values.get(name) === true;
  }

  /** Every string option given, by name (meshd agent's configuration keys). */
  givenStrings(): Array<[string, string]> {
    return [...this.values].flatMap(([k, v]): Array<[string, string]> => (typeof v === 'string' ? [[k, v]] : []));
  }

  /** `data` as the command's -o asks, or `text()` by default. */
  format(data: unknown, text: () => string): string {
    return formatOutput(this.output, data, text);
  }
}

/** What a command needs of its parsed arguments to print in the format asked for. */
export type Formatter = Pick<ParsedArgs<OptionSpecs>, 'format' | 'output'>;

const seeHelp = (spec: CommandSpec) => `see "meshd ${spec.name} --help"`;

/** Parses argv (the words after the command's name) or returns 'help' when -h/--help is among them. */
export function parseCommandLine<O extends OptionSpecs>(spec: CommandSpec<O>, argv: readonly string[], env: NodeJS.ProcessEnv = process.env): ParsedArgs<O> | 'help' {
  const options = allOptions(spec);
  const config = Object.fromEntries(Object.entries(options).map(([k, o]) => [k, { type: o.type, ...(o.short ? { short: o.short } : {}) }]));
  // strict: false so that every problem is reported by this code with the option's name; the checks below are the strict ones.
  const { tokens } = parseArgs({ args: [...argv], options: config, strict: false, allowPositionals: true, tokens: true });
  if (tokens.some((t) => t.kind === 'option' && t.name === 'help')) return 'help';
  const values = new Map<string, string | boolean | string[]>();
  const positionals: string[] = [];
  for (const t of tokens) {
    if (t.kind === 'positional') positionals.push(t.value);
    if (t.kind !== 'option') continue;
    const o = options[t.name];
    if (!o) throw new UsageError(`meshd ${spec.name}: unknown option ${t.rawName}; ${seeHelp(spec)}`);
    if (o.type === 'boolean') {
      if (t.inlineValue) throw new UsageError(`meshd ${spec.name}: option ${t.rawName} takes no value; ${seeHelp(spec)}`);
      values.set(t.name, true);
      continue;
    }
    if (t.value === undefined) throw new UsageError(`meshd ${spec.name}: option ${t.rawName} needs a value (${o.value ?? 'VALUE'}); ${seeHelp(spec)}`);
    if (o.multiple) {
      const prev = values.get(t.name);
      values.set(t.name, [...(Array.isArray(prev) ? prev : []), t.value]);
    } else values.set(t.name, t.value);
  }
  const { min, max } = spec.positionals ?? { min: 0, max: 0 };
  if (positionals.length > max) {
    throw new UsageError(`meshd ${spec.name}: unexpected argument "${positionals[max] ?? ''}"; ${seeHelp(spec)}`);
  }
  if (positionals.length < min) throw new UsageError(`meshd ${spec.name}: missing ${spec.args ?? 'argument'}; ${seeHelp(spec)}`);
  // A command with its own -o/--output (meshd observe) reads it itself.
  const output = spec.output ? (values.get('output') ?? 'text') : 'text';
  if (typeof output !== 'string' || !isOutputFormat(output)) {
    throw new UsageError(`meshd ${spec.name}: unknown output format "${String(output)}"; -o/--output takes ${OUTPUT_FORMATS.join(', ')}`);
  }
  const socket = values.get('api-socket');
  return new ParsedArgs<O>(values, positionals, output, typeof socket === 'string' ? socket : (env.MESHD_API_SOCKET ?? DEFAULT_API_SOCKET));
}

/** The help of one command. */
export function commandHelp(spec: CommandSpec): string {
  const options = Object.entries(allOptions(spec)).filter(([, o]) => !o.hidden);
  const left = options.map(([name, o]) => `${o.short ? `-${o.short}, ` : '    '}--${name}${o.type === 'string' ? ` ${o.value ?? 'VALUE'}` : ''}`);
  const width = Math.max(...left.map((l) => l.length));
  return [
    `Usage: meshd ${spec.name}${spec.args ? ` ${spec.args}` : ''} [options]`,
    '',
    spec.summary,
    '',
    'Options:',
    ...options.map(([, o], i) => `  ${(left[i] ?? '').padEnd(width)}  ${o.help}${o.multiple ? ' (repeatable)' : ''}`),
    ...(spec.notes && spec.notes.length > 0 ? ['', ...spec.notes] : []),
  ].join('\n');
}

/** A runnable command: its spec, and what parses argv and runs it. */
export interface Command {
  readonly spec: CommandSpec;
  run(argv: readonly string[], io: CliIo): Promise<number>;
}

export function command<const O extends OptionSpecs>(spec: CommandSpec<O>, run: (args: ParsedArgs<O>, io: CliIo) => Promise<number> | number): Command {
  return {
    spec,
    async run(argv, io) {
      const parsed = parseCommandLine(spec, argv);
      if (parsed === 'help') {
        io.out(`${commandHelp(spec)}\n`);
        return 0;
      }
      return run(parsed, io);
    },
  };
}

/** Commands under one word (`meshd lb list`, `meshd cni install|uninstall`); a subcommand may be two words (`bpf policy get`). */
export interface CommandGroup {
  readonly name: string;
  readonly summary: string;
  readonly subcommands: readonly Command[];
}

const wordsAfter = (group: CommandGroup, c: Command): string[] => c.spec.name.split(' ').slice(group.name.split(' ').length);

export function groupHelp(group: CommandGroup): string {
  const rows = group.subcommands.map((c) => [`meshd ${c.spec.name}${c.spec.args ? ` ${c.spec.args}` : ''}`, c.spec.summary] as const);
  const width = Math.max(...rows.map(([l]) => l.length));
  return [`Usage: meshd ${group.name} <subcommand> [options]`, '', group.summary, '', 'Subcommands:', ...rows.map(([l, s]) => `  ${l.padEnd(width)}  ${s}`), '', `Each subcommand takes --help.`].join('\n');
}

export async function runGroup(group: CommandGroup, argv: readonly string[], io: CliIo): Promise<number> {
  const first = argv[0];
  if (first === '-h' || first === '--help' || first === 'help') {
    io.out(`${groupHelp(group)}\n`);
    return 0;
  }
  // The longest subcommand whose words start argv.
  const match = group.subcommands
    .map((c) => ({ c, words: wordsAfter(group, c) }))
    .filter(({ words }) => words.every((w, i) => argv[i] === w))
    .sort((a, b) => b.words.length - a.words.length)[0];
  if (!match) {
    const names = group.subcommands.map((c) => wordsAfter(group, c).join(' ')).join(', ');
    const what = first === undefined ? 'missing subcommand' : `unknown subcommand "${first}"`;
    const usage = group.subcommands.length === 1 && group.subcommands[0] ? `; usage: meshd ${group.subcommands[0].spec.name}${group.subcommands[0].spec.args ? ` ${group.subcommands[0].spec.args}` : ''} [options]` : '';
    throw new UsageError(`meshd ${group.name}: ${what} (${names})${usage}; see "meshd ${group.name} --help"`);
  }
  return match.c.run(argv.slice(match.words.length), io);
}
