import t from 'tap';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { assertDistFresh, MAIN } from './helpers/built';
import { startDemoRegistry } from './helpers/cli';

const run = promisify(execFile);

/** Runs the built binary; resolves with its exit code instead of rejecting on a non-zero one. */
async function weft(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(process.execPath, [MAIN, ...args], { env: { PATH: process.env.PATH, ...env }, timeout: 30_000 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

t.test('the built binary: workloads -o json, explain exit code, missing context', async (t) => {
  // npm test builds first; rebuilding here, mid-suite, raced the other files using dist/.
  assertDistFresh();

  const { dir, contextFile: ctx } = await startDemoRegistry(t);
  const env = { HOME: dir, WEFT_CONTEXT: ctx };

  const list = await weft(['workloads', '-o', 'json'], env);
  t.equal(list.code, 0, list.stderr);
  const json = JSON.parse(list.stdout);
  t.equal(json.items.length, 8);
  t.same(json.items.filter((w: { protocol: string }) => w.protocol === 'HBONE').map((w: { uid: string }) => w.uid),
    ['demo/client', 'demo/echo-1', 'demo/echo-2', 'demo/echo-3', 'demo/intruder']);

  const denied = await weft(['explain', 'demo/intruder', 'demo/echo-1:8080'], env);
  t.equal(denied.code, 3, 'a denied connection exits 3');
  t.match(denied.stdout, /Verdict: DENIED/);

  const missing = await weft(['workloads'], { HOME: join(dir, 'nowhere') });
  t.equal(missing.code, 1);
  t.match(missing.stderr, /^weft: no weft context found .* \[WEFT_CONTEXT_MISSING\]\n$/);

  const help = await weft(['--help'], {});
  for (const c of ['workloads', 'services', 'policies', 'tunnels', 'connections', 'certs', 'namespace', 'explain', 'status', 'completion', 'waypoint', 'waypoints', 'apply', 'delete', 'routes']) {
    t.match(help.stdout, new RegExp(`\\n  ${c}\\s`), `weft --help lists ${c}`);
  }
  const completion = await weft(['completion', 'bash'], {});
  t.match(completion.stdout, /complete -F _weft weft/);
  t.match(completion.stdout, /namespace\) subs="enroll unenroll use-waypoint list"/);
  t.match(completion.stdout, /waypoint\) subs="add remove run"/);
  t.match(completion.stdout, /compgen -W "[^"]*--service-account --force /, 'completes the waypoint flags');
  for (const flag of ['--redis-cert-file', '--redis-key-file', '--kubeconfig', '--kube-context', '--admin-token-file', '--filename', '--dry-run']) {
    t.match(completion.stdout, new RegExp(`compgen -W "[^"]*${flag} `), `completes ${flag}`);
  }
  t.match(completion.stdout, /\|--admin-token-file\) COMPREPLY=\( \$\(compgen -f/, 'with file names after a file flag');
  t.match(completion.stdout, /-f\|--filename\|/, 'and after apply -f');
});
