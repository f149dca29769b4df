/**
 * HTTPRoute filters (src/gateway/filters.ts): the conformance cases for header
 * modifiers, path and host rewrites and redirects (mesh RewritePath, RedirectPath,
 * RedirectPort, RedirectScheme, RedirectHostAndStatus; gateway RequestHeaderModifier,
 * RewriteHost), the spec's ReplacePrefixMatch table, and mirror fractions.
 */
import t from 'tap';
import {
  applyFilters, authorityHost, composeHeaderModifiers, computeRedirect, headerMap, modifyHeaders, modifyResponseHeaders, replacePrefix, rewriteUrl,
  shouldMirror, type FilterRequest,
} from '../src/gateway/filters';
import type { HeaderModifier, HTTPRouteFilter, RequestRedirect } from '../src/gateway/types';
import { compileRouteTable } from '../src/gateway/compile';
import { matchedPrefix, selectRoute } from '../src/gateway/select';
import { backend, httpRoute, request, svcRef } from './helpers/gateway-routes';

function req(path: string, opts: { authority?: string; query?: string; headers?: Record<string, string> } = {}): FilterRequest {
  return { scheme: 'http', authority: opts.authority ?? 'echo', path, query: opts.query ?? '', headers: headerMap(opts.headers ?? {}) };
}
const mod = (m: Partial<HeaderModifier>): HeaderModifier => ({ set: [], add: [], remove: [], ...m });
const flat = (h: ReadonlyMap<string, readonly string[]>) => Object.fromEntries([...h].map(([k, v]) => [k, v.join(',')]));

t.test('ReplacePrefixMatch: the spec\'s table', async (t) => {
  const table: [string, string, string, string][] = [
    ['/foo/bar', '/foo', '/xyz', '/xyz/bar'], ['/foo/bar', '/foo', '/xyz/', '/xyz/bar'],
    ['/foo/bar', '/foo/', '/xyz', '/xyz/bar'], ['/foo/bar', '/foo/', '/xyz/', '/xyz/bar'],
    ['/foo', '/foo', '/xyz', '/xyz'], ['/foo/', '/foo', '/xyz', '/xyz/'],
    ['/foo/bar', '/foo', '', '/bar'], ['/foo/', '/foo', '', '/'], ['/foo', '/foo', '', '/'],
    ['/foo/', '/foo', '/', '/'], ['/foo', '/foo', '/', '/'],
    ['/anything', '/', '/api', '/api/anything'],
  ];
  for (const [path, prefix, repl, want] of table) t.equal(replacePrefix(path, prefix, repl), want, `${path} ${prefix} → ${repl}`);
});

t.test('mesh RewritePath: prefix and full-path rewrites, with header changes, from the selected match', async (t) => {
  const route = httpRoute('mesh', 'rw', [svcRef('echo')], [
    ['/prefix/one', { type: 'URLRewrite', urlRewrite: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/one' } } }],
    ['/strip-prefix', { type: 'URLRewrite', urlRewrite: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/' } } }],
    ['/full/one', { type: 'URLRewrite', urlRewrite: { path: { type: 'ReplaceFullPath', replaceFullPath: '/one' } } }],
  ].map(([prefix, f]) => ({
    matches: [{ path: { type: 'PathPrefix' as const, value: prefix as string }, headers: [], queryParams: [] }],
    filters: [f as HTTPRouteFilter], backendRefs: [backend('echo-v1')],
  })));
  const tbl = compileRouteTable([route], { namespace: 'mesh', name: 'echo', port: 80 }, 'mesh');
  const cases: [string, string][] = [
    ['/prefix/one/two', '/one/two'], ['/strip-prefix/three', '/three'], ['/strip-prefix', '/'], ['/full/one/two', '/one'],
  ];
  for (const [path, want] of cases) {
    const sel = selectRoute(tbl, request(path))!;
    const out = applyFilters(sel.rule.filters as HTTPRouteFilter[], req(path, { query: 'a=1' }), { servicePort: 80, matchedPrefix: matchedPrefix(sel) });
    t.equal(out.request.path, want, path);
    t.equal(out.request.query, 'a=1', 'the query survives a rewrite');
  }
  const headersMod = mod({
    set: [{ name: 'X-Header-Set', value: 'set-overwrites-values' }],
    add: [{ name: 'X-Header-Add', value: 'header-val-1' }, { name: 'X-Header-Add-Append', value: 'header-val-2' }],
    remove: ['X-Header-Remove'],
  });
  const out = applyFilters([
    { type: 'URLRewrite', urlRewrite: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/prefix' } } },
    { type: 'RequestHeaderModifier', requestHeaderModifier: headersMod },
  ], req('/prefix/rewrite-path-and-modify-headers/one', {
    headers: { 'X-Header-Remove': 'remove-val', 'X-Header-Add-Append': 'append-val-1', 'X-Header-Set': 'set-val' },
  }), { servicePort: 80, matchedPrefix: '/prefix/rewrite-path-and-modify-headers' });
  t.equal(out.request.path, '/prefix/one');
  t.same(flat(out.request.headers), {
    'x-header-add': 'header-val-1', 'x-header-add-append': 'append-val-1,header-val-2', 'x-header-set': 'set-overwrites-values',
  });
});

t.test('RequestHeaderModifier: set overwrites, add appends, remove drops, names case-insensitive', async (t) => {
  const h = headerMap({ 'Some-Other-Header': 'val', 'X-Header-Set': 'some-other-value', 'X-Header-Add': 'some-other-value' });
  t.same(flat(modifyHeaders(h, mod({ set: [{ name: 'X-Header-Set', value: 'set-overwrites-values' }] }))),
    { 'some-other-header': 'val', 'x-header-set': 'set-overwrites-values', 'x-header-add': 'some-other-value' });
  t.same(flat(modifyHeaders(h, mod({ add: [{ name: 'X-Header-Add', value: 'add-appends-values' }] })))['x-header-add'],
    'some-other-value,add-appends-values');
  const multiple = headerMap({ 'X-Header-Set-2': 'set-val-2', 'X-Header-Add-2': 'add-val-2', 'X-Header-Remove-2': 'remove-val-2', 'Another-Header': 'another-header-val' });
  t.same(flat(modifyHeaders(multiple, mod({
    set: [{ name: 'X-Header-Set-1', value: 'header-set-1' }, { name: 'X-Header-Set-2', value: 'header-set-2' }],
    add: [{ name: 'X-Header-Add-1', value: 'header-add-1' }, { name: 'X-Header-Add-2', value: 'header-add-2' }, { name: 'X-Header-Add-3', value: 'header-add-3' }],
    remove: ['X-Header-Remove-1', 'X-Header-Remove-2'],
  }))), {
    'x-header-set-1': 'header-set-1', 'x-header-set-2': 'header-set-2', 'x-header-add-1': 'header-add-1',
    'x-header-add-2': 'add-val-2,header-add-2', 'x-header-add-3': 'header-add-3', 'another-header': 'another-header-val',
  });
  const lower = headerMap({ 'x-header-set': 'original-val-set', 'x-header-add': 'original-val-add', 'x-header-remove': 'original-val-remove', 'Another-Header': 'another-header-val' });
  t.same(flat(modifyHeaders(lower, mod({ set: [{ name: 'X-Header-Set', value: 'header-set' }], add: [{ name: 'X-Header-Add', value: 'header-add' }], remove: ['X-Header-Remove'] }))),
    { 'x-header-set': 'header-set', 'x-header-add': 'original-val-add,header-add', 'another-header': 'another-header-val' });
  t.equal(flat(h)['x-header-set'], 'some-other-value', 'the input map is not changed');
});

t.test('ResponseHeaderModifier: collected by applyFilters, applied to the response in order', async (t) => {
  const out = applyFilters([
    { type: 'ResponseHeaderModifier', responseHeaderModifier: mod({ set: [{ name: 'X-Header-Set', value: 'set' }] }) },
    { type: 'ResponseHeaderModifier', responseHeaderModifier: mod({ add: [{ name: 'X-Header-Set', value: 'more' }], remove: ['Server'] }) },
  ], req('/'), { servicePort: 80 });
  t.equal(out.redirect, undefined);
  t.same(flat(modifyResponseHeaders(headerMap({ server: 'echo', 'x-header-set': 'orig' }), out.responseHeaders)), { 'x-header-set': 'set,more' });
});

t.test('URLRewrite hostname (RewriteHost): the authority changes, the path does not', async (t) => {
  const out = rewriteUrl({ hostname: 'one.example.org' }, req('/one', { authority: 'rewrite.example' }), '/one');
  t.equal(out.authority, 'one.example.org');
  t.equal(out.path, '/one');
  const both = rewriteUrl({ hostname: 'x', path: { type: 'ReplaceFullPath', replaceFullPath: '/full' } }, req('/a/b'), undefined);
  t.same([both.authority, both.path], ['x', '/full']);
});

t.test('RequestRedirect: path, hostname, port, scheme and status as the mesh conformance cases expect', async (t) => {
  const redirect = (r: Partial<RequestRedirect>, path: string, prefix?: string, authority = 'echo', servicePort = 80) =>
    computeRedirect({ statusCode: 302, ...r }, req(path, { authority }), { servicePort, ...(prefix !== undefined ? { matchedPrefix: prefix } : {}) });
  const prefixTo = (p: string) => ({ path: { type: 'ReplacePrefixMatch' as const, replacePrefixMatch: p } });
  const fullTo = (p: string) => ({ path: { type: 'ReplaceFullPath' as const, replaceFullPath: p } });
  t.same(redirect(prefixTo('/replacement-prefix'), '/original-prefix/lemon', '/original-prefix'),
    { statusCode: 302, location: 'http://echo/replacement-prefix/lemon' });
  t.equal(redirect(fullTo('/full-path-replacement'), '/full/path/original', '/full').location, 'http://echo/full-path-replacement');
  t.equal(redirect({ hostname: 'example.org', ...prefixTo('/replacement-prefix') }, '/path-and-host', '/path-and-host').location,
    'http://example.org/replacement-prefix');
  t.same(redirect({ statusCode: 301, ...prefixTo('/replacement-prefix') }, '/path-and-status', '/path-and-status'),
    { statusCode: 301, location: 'http://echo/replacement-prefix' });
  t.equal(redirect({ hostname: 'example.org', ...fullTo('/replacement-full') }, '/full-path-and-host').location, 'http://example.org/replacement-full');
  // RedirectPort
  t.equal(redirect({ port: 8083 }, '/port').location, 'http://echo:8083/port');
  t.equal(redirect({ port: 8083, hostname: 'example.org' }, '/port-and-host').location, 'http://example.org:8083/port-and-host');
  t.same(redirect({ port: 8083, statusCode: 301 }, '/port-and-status'), { statusCode: 301, location: 'http://echo:8083/port-and-status' });
  // RedirectScheme: https without a port goes to 443, which Location leaves out.
  t.equal(redirect({ scheme: 'https' }, '/scheme').location, 'https://echo/scheme');
  t.equal(redirect({ scheme: 'https', hostname: 'example.org' }, '/scheme-and-host').location, 'https://example.org/scheme-and-host');
  t.equal(redirect({ scheme: 'https', port: 8443 }, '/s').location, 'https://echo:8443/s');
  t.equal(redirect({ scheme: 'http' }, '/s', undefined, 'echo:8080', 8080).location, 'http://echo/s', 'a scheme alone means its well-known port');
  t.equal(redirect({ scheme: 'https', port: 80 }, '/s').location, 'https://echo:80/s', 'port 80 is only default for http');
  // RedirectHostAndStatus, and the default: same scheme, the request's host, the Service port.
  t.equal(redirect({ hostname: 'example.org' }, '/hostname-redirect').location, 'http://example.org/hostname-redirect');
  t.equal(redirect({ hostname: 'example.org' }, '/x', undefined, 'echo:8080', 8080).location, 'http://example.org:8080/x');
  t.equal(redirect({}, '/x', undefined, 'echo.ns.svc.cluster.local:80', 80).location, 'http://echo.ns.svc.cluster.local/x');
  for (const code of [301, 302, 303, 307, 308] as const) t.equal(redirect({ statusCode: code, hostname: 'h' }, '/').statusCode, code);
  const q = computeRedirect({ statusCode: 302, hostname: 'h' }, req('/p', { query: 'a=1&b=2' }), { servicePort: 80 });
  t.equal(q.location, 'http://h/p?a=1&b=2', 'the query is kept');
  t.equal(authorityHost('[::1]:8080'), '[::1]');
  t.equal(authorityHost('[::1]'), '[::1]');
});

t.test('applyFilters: a redirect wins over what follows; rule and backendRef levels chain', async (t) => {
  const out = applyFilters([
    { type: 'RequestHeaderModifier', requestHeaderModifier: mod({ set: [{ name: 'a', value: '1' }] }) },
    { type: 'RequestRedirect', requestRedirect: { statusCode: 307, hostname: 'elsewhere' } },
  ], req('/x'), { servicePort: 80 });
  t.same(out.redirect, { statusCode: 307, location: 'http://elsewhere/x' });
  const rule = applyFilters([{ type: 'RequestHeaderModifier', requestHeaderModifier: mod({ add: [{ name: 'x-level', value: 'rule' }] }) }], req('/'), { servicePort: 80 });
  const backendLevel = applyFilters([{ type: 'RequestHeaderModifier', requestHeaderModifier: mod({ add: [{ name: 'x-level', value: 'backend' }] }) }], rule.request, { servicePort: 80 });
  t.same(flat(backendLevel.request.headers), { 'x-level': 'rule,backend' });
});

t.test('RequestMirror: every request by default, percent and fraction with the injected random', async (t) => {
  const ref = backend('mirror');
  const count = (m: Parameters<typeof shouldMirror>[0]) => {
    let n = 0;
    for (let i = 0; i < 1000; i++) if (shouldMirror(m, () => i / 1000)) n++;
    return n;
  };
  t.equal(count({ backendRef: ref }), 1000);
  t.equal(count({ backendRef: ref, percent: 0 }), 0);
  t.equal(count({ backendRef: ref, percent: 35 }), 350);
  t.equal(count({ backendRef: ref, percent: 100 }), 1000);
  t.equal(count({ backendRef: ref, fraction: { numerator: 1, denominator: 8 } }), 125);
  t.equal(count({ backendRef: ref, fraction: { numerator: 0, denominator: 100 } }), 0);
  t.equal(count({ backendRef: ref, fraction: { numerator: 5, denominator: 5 } }), 1000);
  const out = applyFilters([{ type: 'RequestMirror', requestMirror: { backendRef: ref, percent: 50 } }], req('/'), { servicePort: 80, random: () => 0.2 });
  t.same(out.mirrors, [ref]);
  t.same(applyFilters([{ type: 'RequestMirror', requestMirror: { backendRef: ref, percent: 50 } }], req('/'), { servicePort: 80, random: () => 0.7 }).mirrors, []);
});

t.test('composeHeaderModifiers: one modifier with the effect of several applied in order', async (t) => {
  // A small seeded generator: 500 random lists of up to 3 modifiers over two header
  // names, checked against sequential application on three starting header sets.
  let seed = 42;
  const rnd = (n: number) => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed % n; };
  const names = ['X-A', 'x-b'];
  const starts = [headerMap({}), headerMap({ 'x-a': 'orig' }), headerMap({ 'x-a': ['o1', 'o2'], 'x-b': 'ob', other: 'keep' })];
  let checked = 0;
  for (let i = 0; i < 500; i++) {
    const mods: HeaderModifier[] = [];
    for (let m = rnd(3) + 1; m > 0; m--) {
      const one = mod({});
      for (let k = rnd(4); k > 0; k--) {
        const name = names[rnd(2)]!;
        const op = rnd(3);
        if (op === 0) one.set.push({ name, value: `s${i}.${k}` });
        else if (op === 1) one.add.push({ name, value: `a${i}.${k}` });
        else one.remove.push(name);
      }
      mods.push(one);
    }
    const composed = composeHeaderModifiers(mods);
    for (const start of starts) {
      const want = flat(modifyResponseHeaders(start, mods));
      const got = flat(modifyHeaders(start, composed));
      if (JSON.stringify(Object.entries(got).sort()) !== JSON.stringify(Object.entries(want).sort())) {
        t.fail(`mods ${JSON.stringify(mods)} on ${JSON.stringify(flat(start))}: composed gives ${JSON.stringify(got)}, sequential ${JSON.stringify(want)}`);
        return;
      }
      checked++;
    }
  }
  t.equal(checked, 1500);
  t.same(composeHeaderModifiers([mod({ remove: ['X-A'] }), mod({ add: [{ name: 'x-a', value: '1' }] })]), mod({ set: [{ name: 'x-a', value: '1' }] }),
    'remove then add = set');
  const out = applyFilters([
    { type: 'RequestHeaderModifier', requestHeaderModifier: mod({ add: [{ name: 'x', value: '1' }] }) },
  ], req('/'), { servicePort: 80 });
  t.same(out.requestHeaders, [mod({ add: [{ name: 'x', value: '1' }] })], 'applyFilters lists the request edits it applied');
});
