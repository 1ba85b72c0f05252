/**
 * Command-line flags shared by the benchmarks: `--json` (figures as one JSON
 * object on the last line of stdout; progress goes to stderr) and numeric
 * `--name N` options validated at the boundary.
 */
export interface BenchArgs {
  json: boolean;
  /** A positive number given as `--flag N`, or the default. */
  num(flag: string, dflt: number): number;
  /** Progress output: stdout normally, stderr with --json (stdout then ends with the JSON line). */
  log(line: string): void;
}

export function benchArgs(argv: readonly string[] = process.argv.slice(2)): BenchArgs {
  const json = argv.includes('--json');
  return {
    json,
    num(flag, dflt) {
      const i = argv.indexOf(flag);
      if (i < 0) return dflt;
      const v = Number(argv[i + 1]);
      if (!Number.isFinite(v) || v <= 0) throw new Error(`${flag}: expected a positive number, got "${argv[i + 1] ?? ''}"`);
      return v;
    },
    log: (line) => void (json ? process.stderr : process.stdout).write(`${line}\n`),
  };
}
