/**
 * Judging an answer against a Gateway API conformance expectation, as upstream's
 * CompareRoundTrip does: the answering pod, the status, the path and headers the
 * backend saw, the response headers, a redirect's Location. Shared by the e2e runner
 * (answers from the lab's echo pods) and the unit test (decideRoute's outcome in the
 * same shape), so one table means the same thing in both.
 */
import type { BatchAnswer } from '../../src/lab/client-batch';
import type { EchoAnswer } from '../../src/lab/echo';

/** A request's expectation, in upstream's terms; absent fields are not checked. */
export interface Expect {
  /** One status or any of several; default 200. */
  status?: number | number[];
  /** The answering pod's name starts with this. */
  backend?: string;
  /** The path (and query) the backend saw. */
  seenPath?: string;
  /** Headers the backend saw (several values joined with ","). */
  seenHeaders?: Record<string, string>;
  absentSeenHeaders?: string[];
  responseHeaders?: Record<string, string>;
  absentResponseHeaders?: string[];
  /** Parts of the Location a redirect must have (the others are not checked, as upstream). */
  redirect?: { scheme?: string; host?: string; port?: string; path?: string };
}

/** Several values of a header as upstream compares them: joined with ",". */
export function joined(v: string | string[] | undefined): string | undefined {
  if (v === undefined) return undefined;
  return (Array.isArray(v) ? v : [v]).flatMap((x) => x.split(/\s*,\s*/)).join(',');
}

/** What is wrong with an answer (empty: it meets the expectation). */
export function judge(want: Expect, got: BatchAnswer): string[] {
  if (got.error !== undefined) return [`no answer: ${got.error}`];
  const bad: string[] = [];
  const statuses = [want.status ?? 200].flat();
  if (!statuses.includes(got.status!)) bad.push(`status ${got.status}, want ${statuses.join(' or ')}`);
  const echo = typeof got.body === 'object' && got.body !== null ? got.body as EchoAnswer : undefined;
  if (want.backend !== undefined && !echo?.pod?.startsWith(want.backend)) bad.push(`answered by ${echo?.pod ?? '(no echo answer)'}, want ${want.backend}`);
  if (want.seenPath !== undefined && echo?.path !== want.seenPath) bad.push(`backend saw path ${echo?.path}, want ${want.seenPath}`);
  for (const [k, v] of Object.entries(want.seenHeaders ?? {})) {
    const seen = joined(echo?.headers[k.toLowerCase()]);
    if (seen !== v) bad.push(`backend saw ${k}: ${seen}, want ${v}`);
  }
  for (const k of want.absentSeenHeaders ?? []) if (echo?.headers[k.toLowerCase()] !== undefined) bad.push(`backend saw ${k}, want it absent`);
  for (const [k, v] of Object.entries(want.responseHeaders ?? {})) {
    const h = joined(got.headers?.[k.toLowerCase()]);
    if (h !== v) bad.push(`response ${k}: ${h}, want ${v}`);
  }
  for (const k of want.absentResponseHeaders ?? []) if (got.headers?.[k.toLowerCase()] !== undefined) bad.push(`response has ${k}, want it absent`);
  if (want.redirect) {
    const loc = got.headers?.location;
    let u: URL | undefined;
    try { u = typeof loc === 'string' ? new URL(loc) : undefined; } catch { /* judged below */ }
    if (!u) bad.push(`location ${JSON.stringify(loc)} is not a URL`);
    else {
      const r = want.redirect;
      if (r.scheme !== undefined && u.protocol !== `${r.scheme}:`) bad.push(`location ${loc}: scheme, want ${r.scheme}`);
      if (r.host !== undefined && u.hostname !== r.host) bad.push(`location ${loc}: host, want ${r.host}`);
      if (r.port !== undefined && u.port !== r.port) bad.push(`location ${loc}: port, want ${r.port}`);
      if (r.path !== undefined && u.pathname !== r.path) bad.push(`location ${loc}: path, want ${r.path}`);
    }
  }
  return bad;
}
