/**
 * Where a follower's heap goes at a registry size, structure by structure, for
 * `scale.js --heap-breakdown` (docs/scaling.md, "A node following only what it needs"):
 *
 *   node --expose-gc dist/bench/scale-heap.js WORKLOADS
 *
 * Builds the bench population (registry-population.ts) as the HGETALL replies a
 * follower gets, parses and validates them as the follower does (parseHashes) and loads
 * a MeshState (replaceAll). Then clears MeshState's structures one at a time, indexes
 * first, records last, with a full GC before each heap reading: what a structure frees
 * is its share. A string two structures share is charged to the one cleared last, so
 * the order is part of the figure. Prints one JSON line (HeapBreakdown).
 */
import { parseHashes } from '../registry/layout';
import { MeshState } from '../registry/state';
import { KINDS, recordKey, type Kind, type RecordsByKind } from '../registry/types';
import { populationRecords, sizeFor, type PopulationSize } from './registry-population';

export interface HeapPart { structure: string; bytes: number }

export interface HeapBreakdown {
  workloads: number;
  /** Heap in use with the state loaded, less the heap before it was built. */
  stateBytes: number;
  parts: HeapPart[];
  /** What is left after every listed structure was cleared (other kinds, the state's shell). */
  restBytes: number;
}

/**
 * MeshState's private fields, by name, in the order they are cleared (src/registry/state.ts).
 * A bench reading privates: a renamed field fails loudly below, not silently.
 */
const PARTS: { structure: string; fields: string[]; kinds?: Kind[] }[] = [
  { structure: 'address index', fields: ['byAddress'] },
  { structure: 'label index', fields: ['byLabel'] },
  { structure: 'node index', fields: ['byNode'] },
  { structure: 'namespace index', fields: ['byNamespace'] },
  { structure: 'identity counts', fields: ['identities'] },
  { structure: 'Service VIP index', fields: ['serviceVips'] },
  { structure: 'Service host index', fields: ['serviceHosts'] },
  { structure: 'workload views (shared identity strings included)', fields: ['views', 'identityStrings'] },
  { structure: 'Service records', fields: [], kinds: ['service'] },
  { structure: 'workload records', fields: [], kinds: ['workload'] },
];

function heapAfterGc(): number {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('scale-heap.js needs node --expose-gc');
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

/** The population as stored: one hash per kind, JSON per record (what HGETALL returns). */
function storedHashes(size: PopulationSize): Record<string, string>[] {
  const hashes = KINDS.map(() => ({}) as Record<string, string>);
  for (const change of populationRecords(size)) {
    if (change.op !== 'put') continue;
    hashes[KINDS.indexOf(change.kind)]![recordKey(change.kind, change.record as RecordsByKind[typeof change.kind])] = JSON.stringify(change.record);
  }
  return hashes;
}

/** Its own function, so nothing but the state stays reachable once it returns. */
function load(size: PopulationSize): MeshState {
  const state = new MeshState({ trustDomain: 'cluster.local' });
  state.replaceAll(parseHashes(storedHashes(size), () => {}), 1);
  return state;
}

function clearable(state: MeshState, field: string): { clear(): void } {
  const value = (state as unknown as Record<string, unknown>)[field] as { clear?: unknown } | undefined;
  if (typeof value?.clear !== 'function') throw new Error(`MeshState has no clearable '${field}' any more: update PARTS in src/bench/scale-heap.ts`);
  return value as { clear(): void };
}

export function heapBreakdown(size: PopulationSize): HeapBreakdown {
  const before = heapAfterGc();
  const state = load(size);
  let last = heapAfterGc();
  const stateBytes = last - before;
  const stores = (state as unknown as { stores?: Record<Kind, Map<string, unknown>> }).stores;
  if (!stores?.workload) throw new Error("MeshState has no 'stores' any more: update src/bench/scale-heap.ts");
  const parts: HeapPart[] = [];
  for (const part of PARTS) {
    for (const field of part.fields) clearable(state, field).clear();
    for (const kind of part.kinds ?? []) stores[kind].clear();
    const now = heapAfterGc();
    parts.push({ structure: part.structure, bytes: last - now });
    last = now;
  }
  return { workloads: size.workloads, stateBytes, parts, restBytes: last - before };
}

if (require.main === module) {
  const workloads = Number(process.argv[2]);
  if (!Number.isInteger(workloads) || workloads <= 0) {
    console.error('usage: node --expose-gc dist/bench/scale-heap.js <workloads> (run by scale.js --heap-breakdown)');
    process.exitCode = 1;
  } else {
    process.stdout.write(`${JSON.stringify(heapBreakdown(sizeFor(workloads)))}\n`);
  }
}
