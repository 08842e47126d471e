import { defineCommand } from 'citty';
import { describeBackends, diagnoseBackends, type BackendChoice, type DoctorReport } from '../train/backend.ts';
import { backendFlag, cittyArgs, parseFlags, type FlagSpecs } from './_args.ts';

const flags = {
  backend: backendFlag('Backend to try, as `altforge train --backend` would'),
  sgemmSize: { type: 'integer', description: 'Side of the square sgemm timed', default: 1024, valueHint: 'N' },
  json: { type: 'boolean', description: 'Print the report as JSON on stdout' },
} satisfies FlagSpecs;

/** The doctor's lines: the backend report, the sgemm rate, versions. */
export function doctorLines(report: DoctorReport): string[] {
  const lines = describeBackends(report.backend).split('\n');
  lines.push(
    'error' in report.sgemm
      ? `sgemm: unavailable: ${report.sgemm.error}`
      : `sgemm: ${report.sgemm.gflops.toFixed(1)} GFLOP/s on ${report.sgemm.size}x${report.sgemm.size}x${report.sgemm.size} (${report.sgemm.blas})`,
  );
  lines.push(
    'versions: ' +
      Object.entries(report.versions)
        .map(([name, version]) => `${name} ${version ?? 'not installed'}`)
        .join(', '),
  );
  lines.push(`cpus: ${report.cpus}`);
  return lines;
}

export const doctorCommand = defineCommand({
  meta: {
    name: 'doctor',
    description:
      'Show which training backend `auto` picks and why the others were skipped, the BLAS sgemm rate, and versions',
  },
  args: cittyArgs(flags),
  async run({ rawArgs }) {
    const { values } = parseFlags(rawArgs, flags);
    const { backend, sgemmSize, json } = values as { backend?: BackendChoice; sgemmSize?: number; json?: boolean };
    const report = await diagnoseBackends({
      ...(backend ? { choice: backend } : {}),
      ...(sgemmSize !== undefined ? { sgemmSize } : {}),
    });
    if (json) process.stdout.write(JSON.stringify(report) + '\n');
    else process.stdout.write(doctorLines(report).join('\n') + '\n');
  },
});
