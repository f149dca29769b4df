/**
 * What a V8 heap snapshot holds, grouped by constructor, and the difference between
 * two (e.g. a ztunnel idle and holding N connections), per connection: which objects
 * a connection costs. Self sizes only (no retained sizes: the per-connection objects
 * retain each other, so self sizes add up without counting anything twice).
 *
 * Groups: objects by constructor name, closures by function name and script file (so
 * Weft's closures tell themselves apart from Node's), strings, arrays, code and V8's
 * internal ('system / …') objects by their name, native objects by the embedder's name
 * (`Node / Http2Stream`, nghttp2's memory).
 */
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { mdTable } from '../lib/markdown';

export interface Group { count: number; bytes: number }

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[]]; edge_fields: string[]; edge_types: [string[]] } };
  nodes: number[];
  edges: number[];
  strings: string[];
}

/** Constructor → count and self size of every node of a snapshot file. */
export function heapGroups(path: string): Map<string, Group> {
  const snap = JSON.parse(readFileSync(path, 'utf8')) as Snapshot;
  const { node_fields: nf, node_types: [nodeTypes], edge_fields: ef, edge_types: [edgeTypes] } = snap.snapshot.meta;
  const N = nf.length;
  const E = ef.length;
  const iType = nf.indexOf('type');
  const iName = nf.indexOf('name');
  const iSize = nf.indexOf('self_size');
  const iEdges = nf.indexOf('edge_count');
  const eType = ef.indexOf('type');
  const eName = ef.indexOf('name_or_index');
  const eTo = ef.indexOf('to_node');
  const { nodes, edges, strings } = snap;
  const count = nodes.length / N;
  const firstEdge = new Uint32Array(count + 1);
  for (let i = 0; i < count; i++) firstEdge[i + 1] = firstEdge[i]! + nodes[i * N + iEdges]! * E;
  const propertyType = edgeTypes.indexOf('property');
  const internalType = edgeTypes.indexOf('internal');
  const contextType = edgeTypes.indexOf('context');
  /** The first few names of edges of `type` from node `i`: a plain object's keys, a context's variables. */
  const edgeNames = (i: number, type: number, max = 5): string => {
    const names: string[] = [];
    for (let e = firstEdge[i]!; e < firstEdge[i + 1]! && names.length < max; e += E) {
      if (edges[e + eType] === type) names.push(strings[edges[e + eName]!]!);
    }
    return names.join(',');
  };
  /** The node an edge named `name` of node `i` points to (node index), or -1. */
  const child = (i: number, ...names: string[]): number => {
    for (let e = firstEdge[i]!; e < firstEdge[i + 1]!; e += E) {
      const t = edges[e + eType];
      if ((t === propertyType || t === internalType) && names.includes(strings[edges[e + eName]!]!)) return edges[e + eTo]! / N;
    }
    return -1;
  };
  const scriptOf = (closure: number): string => {
    const shared = child(closure, 'shared');
    if (shared < 0) return '?';
    const script = child(shared, 'script', 'script_or_debug_info');
    if (script < 0) return '?';
    const name = child(script, 'name');
    return name < 0 ? '?' : shortFile(strings[nodes[name * N + iName]!]!);
  };
  const groups = new Map<string, Group>();
  for (let i = 0; i < count; i++) {
    const type = nodeTypes[nodes[i * N + iType]!]!;
    const name = strings[nodes[i * N + iName]!]!;
    let key: string;
    if (type === 'object' && name === 'Object') key = `object: Object {${edgeNames(i, propertyType)}}`;
    else if (name === 'system / Context') key = `context {${edgeNames(i, contextType)}}`;
    else if (type === 'closure' && name === 'native_bind') {
      const target = child(i, 'bound_function');
      key = `bound: ${target < 0 ? '?' : strings[nodes[target * N + iName]!]}`;
    } else if (type === 'concatenated string' || type === 'string' || type === 'sliced string') key = `(${type}) ${name.slice(0, 24).replace(/[0-9a-f]{8,}/g, '<hex>').replace(/\d+/g, '#')}`;
    else if (type === 'object' || type === 'native' || type === 'synthetic' || type === 'hidden' || type === 'array' || type === 'code') key = `${type}: ${name.slice(0, 60)}`;
    else if (type === 'closure') key = `closure: ${name || '(anonymous)'} (${scriptOf(i)})`;
    else key = `(${type})`;
    const g = groups.get(key) ?? { count: 0, bytes: 0 };
    g.count++;
    g.bytes += nodes[i * N + iSize]!;
    groups.set(key, g);
  }
  return groups;
}

/** `dist/hbone/pipe.js` → `hbone/pipe.js`; node's own modules as `node:<file>`. */
function shortFile(f: string): string {
  const dist = f.lastIndexOf('/dist/');
  if (dist >= 0) return f.slice(dist + 6);
  const nm = f.lastIndexOf('/node_modules/');
  if (nm >= 0) return f.slice(nm + 14).split('/').slice(0, 2).join('/');
  if (f.startsWith('node:')) return f;
  return f.includes('/') ? basename(f) : f ? `node:${f}` : '?';
}

export interface DiffRow { key: string; count: number; bytes: number }

/** Growth from `before` to `after`, per `per` (e.g. connections), biggest first. */
export function heapDiff(before: Map<string, Group>, after: Map<string, Group>, per: number): DiffRow[] {
  const rows: DiffRow[] = [];
  const none = { count: 0, bytes: 0 };
  // Every group of either snapshot: one gone by `after` is a negative row, so the total is the real growth.
  for (const key of new Set([...before.keys(), ...after.keys()])) {
    const a = after.get(key) ?? none;
    const b = before.get(key) ?? none;
    rows.push({ key, count: (a.count - b.count) / per, bytes: (a.bytes - b.bytes) / per });
  }
  return rows.sort((x, y) => y.bytes - x.bytes);
}

if (require.main === module) {
  const [before, after, per] = process.argv.slice(2);
  if (!before || !after) {
    console.error('node dist/bench/heap-diff.js <before.heapsnapshot> <after.heapsnapshot> [per, e.g. the connection count]');
    process.exit(2);
  }
  const rows = heapDiff(heapGroups(before), heapGroups(after), Number(per ?? 1));
  const total = rows.reduce((a, r) => a + r.bytes, 0);
  console.log(mdTable(['group', 'objects per', 'bytes per'], [...rows.slice(0, 40).map((r) => [r.key, r.count.toFixed(2), r.bytes.toFixed(0)]), ['total', '', total.toFixed(0)]]));
}
