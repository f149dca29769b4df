// The L7 authorization section of test/e2e/resilience.test.ts (on the shared resilience
// lab: netns, iptables, real processes): Service demo/echo behind demo/waypoint, a second
// ambient namespace `other` with its own client. Policies bound with targetRefs by `weft
// apply` (Istio's security.istio.io/v1):
// - before the Service has a waypoint (the section unbinds the namespace first), the same
//   policy is refused at apply (it would be enforced nowhere), and so is an L7 rule on a
//   selector policy, saying what to do;
// - a GET is allowed, a POST to /admin denied with 403 `RBAC: access denied`, a DELETE
//   denied (no ALLOW policy matches it), a request from namespace `other` denied although
//   an ALLOW policy matches it (DENY before ALLOW), a header condition denies;
// - the denials are counted at the waypoint by policy and logged with the policy's name.
import type { Test } from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LabHandle } from '../helpers/lab';
import { deleteFile, sectionDir, settle, type ResilienceLab } from '../helpers/resilience-lab';

const POLICIES = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: allow-reads-writes, namespace: demo }
spec:
  targetRefs: [{ group: "", kind: Service, name: echo }]
  action: ALLOW
  rules:
    - to: [{ operation: { methods: ["GET", "POST"] } }]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: deny-admin-writes, namespace: demo }
spec:
  targetRefs: [{ group: "", kind: Service, name: echo }]
  action: DENY
  rules:
    - to: [{ operation: { methods: ["POST"], paths: ["/admin", "/admin/*"] } }]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: deny-other, namespace: demo }
spec:
  targetRefs: [{ group: "", kind: Service, name: echo }]
  action: DENY
  rules:
    - from: [{ source: { namespaces: ["other"] } }]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: deny-blocked-header, namespace: demo }
spec:
  targetRefs: [{ group: "", kind: Service, name: echo }]
  action: DENY
  rules:
    - when: [{ key: "request.headers[x-block]", values: ["yes"] }]
`;

const SELECTOR_L7 = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: selector-l7, namespace: demo }
spec:
  selector: { matchLabels: { app: echo } }
  action: DENY
  rules:
    - to: [{ operation: { methods: ["POST"], paths: ["/admin"] } }]
`;

interface Answer { status: number; body: string }

/** One request from `pod`; the status from --include's status line (0: no answer). */
async function ask(lab: LabHandle, pod: string, method: string, path: string, headers: string[] = []): Promise<Answer> {
  const res = await lab.exec(pod, ['weft', 'lab', 'request', `http://echo.demo${path}`, '--method', method, '--include', '--timeout', '3s',
    ...headers.flatMap((h) => ['-H', h])]);
  const m = /^HTTP\/1\.1 (\d{3})/.exec(res.stdout);
  return { status: m ? Number(m[1]) : 0, body: res.stdout.split(/\r?\n\r?\n/).slice(1).join('\n\n').trim() };
}

/** Unbinds namespace demo first, binds it again in its second step; deletes its policies at the end. */
export function section(t: Test, r: ResilienceLab): Promise<unknown> {
  return t.test('L7 authorization at the waypoint: refused without a waypoint, then ALLOW/DENY/when enforced with 403 RBAC: access denied', async (t) => {
    const { lab } = r;
    const dir = sectionDir(r, 'authz');
    writeFileSync(join(dir, 'policies.yaml'), POLICIES);
    writeFileSync(join(dir, 'selector-l7.yaml'), SELECTOR_L7);
    const wp = lab.state()!.waypoints!.find((x) => x.uid === 'demo/waypoint')!;
    t.teardown(async () => {
      // The lab as found: demo bound to its waypoint, none of these policies.
      const use = await lab.weft(['namespace', 'use-waypoint', 'demo', 'waypoint']);
      if (use.code !== 0) throw new Error(`weft namespace use-waypoint failed: ${use.stderr}`);
      await deleteFile(r, join(dir, 'policies.yaml')).catch(() => undefined); // none stored if the apply was never accepted
      await settle(r);
    });
    const unbind = await lab.weft(['namespace', 'use-waypoint', 'demo', 'none']);
    t.equal(unbind.code, 0, unbind.stderr);

    await t.test('without a waypoint bound to echo: the policies are refused at apply, nothing is written', async (t) => {
      const refused = await lab.weft(['apply', '-f', join(dir, 'policies.yaml')]);
      t.not(refused.code, 0);
      t.match(refused.stderr, /AuthorizationPolicy demo\/allow-reads-writes: targetRefs\[0\] names Service demo\/echo, which has no waypoint: .*enforced nowhere; add a waypoint and bind the Service to it/);
      t.match(refused.stderr, /nothing was applied/);
      const selector = await lab.weft(['apply', '-f', join(dir, 'selector-l7.yaml')]);
      t.not(selector.code, 0);
      t.match(selector.stderr, /spec\.rules\[0\]\.to\[0\]\.operation\.methods is an L7 attribute; without targetRefs this AuthorizationPolicy is enforced at L4 by the ztunnel.*bind the policy with targetRefs/);
      t.comment(`refusal: ${refused.stderr.trim().split('\n')[0]}`);
      const list = await lab.weft(['policies', '-n', 'demo']);
      t.notMatch(list.stdout, /allow-reads-writes|selector-l7/, 'no policy was stored');
      const open = await ask(lab, 'demo/client', 'POST', '/admin');
      t.equal(open.status, 200, 'no policy in force: POST /admin reaches echo');
    });

    await t.test('bound to the waypoint: the policies apply', async (t) => {
      const use = await lab.weft(['namespace', 'use-waypoint', 'demo', 'waypoint']);
      t.equal(use.code, 0, use.stderr);
      const apply = await lab.weft(['apply', '-f', join(dir, 'policies.yaml')]);
      t.equal(apply.code, 0, apply.stderr);
      t.match(apply.stdout, /authorizationpolicy\.security\.istio\.io\/deny-admin-writes created/);
      // The waypoint learns the policies from the registry: a bounded number of tries (not a timing assertion).
      let last: Answer | undefined;
      for (let i = 0; i < 40; i++) {
        last = await ask(lab, 'demo/client', 'POST', '/admin');
        if (last.status === 403) break;
        await new Promise((r) => setTimeout(r, 250));
      }
      t.equal(last?.status, 403, 'POST /admin is denied once the waypoint has the policies');
    });

    await t.test('the decisions, from demo/client and other/client', async (t) => {
      const cases: [string, string, string, string[], number, string][] = [
        ['demo/client', 'GET', '/', [], 200, 'a GET is allowed (ALLOW matches)'],
        ['demo/client', 'GET', '/admin', [], 200, 'a GET to /admin is allowed (the DENY is for POST)'],
        ['demo/client', 'POST', '/api', [], 200, 'a POST elsewhere is allowed'],
        ['demo/client', 'POST', '/admin/users', [], 403, 'a POST to /admin/* is denied'],
        ['demo/client', 'POST', '//admin', [], 403, 'a POST to //admin is denied too (paths compared normalised)'],
        ['demo/client', 'DELETE', '/', [], 403, 'a DELETE is denied: no ALLOW policy matches it'],
        ['other/client', 'GET', '/', [], 403, 'namespace other is denied although the ALLOW matches (DENY before ALLOW)'],
        ['demo/client', 'GET', '/', ['x-block: yes'], 403, 'the header condition denies'],
        ['demo/client', 'GET', '/', ['x-block: no'], 200, 'another header value does not'],
      ];
      for (const [pod, method, path, headers, status, what] of cases) {
        const a = await ask(lab, pod, method, path, headers);
        t.equal(a.status, status, `${what}: ${pod} ${method} ${path} ${headers.join(' ')} → ${a.status}`);
        if (status === 403) t.equal(a.body, 'RBAC: access denied', 'body RBAC: access denied');
        else t.match(a.body, /"pod":"echo-\d"/, 'answered by an echo pod');
      }
    });

    await t.test('the waypoint counted the denials by policy and logged them with the policy name', async (t) => {
      const res = await lab.exec('demo/waypoint', ['weft', 'lab', 'request', `http://${wp.ip}:15020/metrics`]);
      t.equal(res.code, 0, res.stderr);
      const denies = new Map<string, number>();
      for (const m of res.stdout.matchAll(/^weft_waypoint_authz_decisions_total\{([^}]*)\} (\d+)/gm)) {
        if (!/decision="deny"/.test(m[1]!)) continue;
        denies.set(/policy="([^"]*)"/.exec(m[1]!)![1]!, Number(m[2]));
      }
      t.comment(`denials by policy: ${JSON.stringify(Object.fromEntries(denies))}`);
      t.ok((denies.get('demo/deny-admin-writes') ?? 0) >= 3, 'deny-admin-writes: the tries, /admin/users and //admin');
      t.equal(denies.get('demo/deny-other'), 1);
      t.equal(denies.get('demo/deny-blocked-header'), 1);
      t.equal(denies.get('none'), 1, 'the DELETE: no ALLOW policy matched');
      const log = readFileSync(join(lab.labDir, 'logs', 'waypoint-demo-waypoint.log'), 'utf8');
      t.match(log, /"policy":"demo\/deny-other".*"msg":"L7 authorization denied the request \(403 RBAC: access denied\)"/);
      const explain = await lab.weft(['explain', 'demo/client', 'http://echo.demo/admin/x', '--method', 'POST']);
      t.match(explain.stdout, /Authorization: DENY by demo\/deny-admin-writes/);
      t.match(explain.stdout, /Answer: 403 RBAC: access denied/);
    });
  });
}

