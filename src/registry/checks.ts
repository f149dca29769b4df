/**
 * Field checkers for registry validation. Each takes the value and its path and
 * either returns a fresh, typed value or throws FieldError naming the path and what
 * was expected; validate.ts turns that into a WeftError naming the record.
 */
import { isIP } from 'node:net';
import type { Labels } from './types';

export class FieldError extends Error {
  constructor(readonly field: string, readonly problem: string) {
    super(`${field} ${problem}`);
  }
}

export type UnknownKeys = 'reject' | 'drop';

export const join = (path: string, key: string): string => (path ? `${path}.${key}` : key);

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const LABEL_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;

/** A string check: returns the problem, or undefined when fine. */
export type StringRule = (s: string) => string | undefined;

export const rules = {
  nonEmpty: ((s) => (s.length === 0 ? 'must not be empty' : s.length > 253 ? 'must be at most 253 characters' : undefined)) as StringRule,
  /** Kubernetes names of namespaces and services: one DNS label. */
  dnsLabel: ((s) => (s.length <= 63 && DNS_LABEL.test(s) ? undefined
    : 'must be a DNS-1123 label (lower-case letters, digits and "-", starting and ending alphanumeric, at most 63 characters)')) as StringRule,
  /** Kubernetes names of pods, nodes, service accounts, policies; and hostnames. */
  dnsSubdomain: ((s) => (s.length <= 253 && s.split('.').every((p) => p.length <= 63 && DNS_LABEL.test(p)) ? undefined
    : 'must be a DNS-1123 subdomain (lower-case dot-separated labels of letters, digits and "-", at most 253 characters)')) as StringRule,
  ip: ((s) => (isIP(s) ? undefined : 'must be an IPv4 or IPv6 address')) as StringRule,
  cidr: ((s) => (isCidr(s) ? undefined : 'must be a CIDR such as 10.0.0.0/24')) as StringRule,
  ipOrCidr: ((s) => (isIP(s) || isCidr(s) ? undefined : 'must be an IP address or a CIDR such as 10.0.0.0/24')) as StringRule,
  spiffe: ((s) => (/^spiffe:\/\/[^/\s]+(\/\S*)?$/.test(s) ? undefined : 'must be a spiffe:// URI such as spiffe://cluster.local/ns/demo/sa/web')) as StringRule,
  noSpace: ((s) => (s.length > 0 && s.length <= 253 && !/[\s\u0000-\u001f]/.test(s) ? undefined
    : 'must be 1-253 characters without spaces or control characters')) as StringRule,
};

function isCidr(s: string): boolean {
  const m = /^([^/]+)\/(\d{1,3})$/.exec(s);
  if (!m) return false;
  const family = isIP(m[1]!);
  const len = Number(m[2]);
  return family !== 0 && len <= (family === 4 ? 32 : 128);
}

/** A value as a refusal shows it: strings quoted (long ones cut), objects by their kind. */
export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'string' ? JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}...` : v) : typeof v === 'object' ? 'an object' : String(v);
}

/** An object with known keys; unknown keys are rejected (writers) or dropped (readers). */
export class Obj {
  readonly o: Record<string, unknown>;

  constructor(v: unknown, readonly path: string, known: readonly string[], unknown: UnknownKeys) {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) {
      throw new FieldError(path || '(record)', `must be an object, got ${describe(v)}`);
    }
    this.o = v as Record<string, unknown>;
    if (unknown === 'reject') {
      for (const k of Object.keys(this.o)) {
        if (!known.includes(k)) throw new FieldError(join(path, k), `is not a known field (known: ${known.join(', ')})`);
      }
    }
  }

  has(key: string): boolean {
    return this.o[key] !== undefined;
  }

  string(key: string, rule: StringRule = rules.nonEmpty): string {
    const v = this.o[key];
    const p = join(this.path, key);
    if (v === undefined) throw new FieldError(p, 'is required');
    return checkString(v, p, rule);
  }

  optString(key: string, rule: StringRule = rules.nonEmpty): string | undefined {
    return this.has(key) ? this.string(key, rule) : undefined;
  }

  oneOf<T extends string>(key: string, values: readonly T[]): T {
    const v = this.o[key];
    const p = join(this.path, key);
    if (v === undefined) throw new FieldError(p, `is required (one of ${values.join(', ')})`);
    if (typeof v !== 'string' || !values.includes(v as T)) throw new FieldError(p, `must be one of ${values.join(', ')}, got ${describe(v)}`);
    return v as T;
  }

  optOneOf<T extends string>(key: string, values: readonly T[]): T | undefined {
    return this.has(key) ? this.oneOf(key, values) : undefined;
  }

  port(key: string): number {
    const v = this.o[key];
    const p = join(this.path, key);
    if (v === undefined) throw new FieldError(p, 'is required');
    return checkPort(v, p);
  }

  array<T>(key: string, item: (v: unknown, path: string) => T): T[] {
    const v = this.o[key];
    const p = join(this.path, key);
    if (v === undefined) throw new FieldError(p, 'is required');
    if (!Array.isArray(v)) throw new FieldError(p, `must be an array, got ${describe(v)}`);
    return v.map((x, i) => item(x, `${p}[${i}]`));
  }

  optArray<T>(key: string, item: (v: unknown, path: string) => T): T[] | undefined {
    return this.has(key) ? this.array(key, item) : undefined;
  }

  labels(key: string): Labels {
    const p = join(this.path, key);
    if (!this.has(key)) throw new FieldError(p, 'is required (an object of string labels, may be empty)');
    return checkLabels(this.o[key], p);
  }

  optLabels(key: string): Labels | undefined {
    return this.has(key) ? this.labels(key) : undefined;
  }
}

export function checkString(v: unknown, path: string, rule: StringRule = rules.nonEmpty): string {
  if (typeof v !== 'string') throw new FieldError(path, `must be a string, got ${describe(v)}`);
  const problem = rule(v);
  if (problem) throw new FieldError(path, `${problem}, got ${describe(v)}`);
  return v;
}

export function checkPort(v: unknown, path: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 65535) {
    throw new FieldError(path, `must be an integer 1-65535, got ${describe(v)}`);
  }
  return v;
}

/** Kubernetes label syntax: `[prefix/]name` keys, values of at most 63 characters of the same alphabet. */
export function checkLabels(v: unknown, path: string): Labels {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new FieldError(path, `must be an object of string labels, got ${describe(v)}`);
  const out: Labels = {};
  for (const [k, val] of Object.entries(v as Record<string, unknown>)) {
    const slash = k.lastIndexOf('/');
    const prefix = slash === -1 ? undefined : k.slice(0, slash);
    const name = slash === -1 ? k : k.slice(slash + 1);
    if ((prefix !== undefined && rules.dnsSubdomain(prefix)) || name.length > 63 || !LABEL_NAME.test(name)) {
      throw new FieldError(`${path}[${JSON.stringify(k)}]`, 'is not a valid label key ([prefix/]name, name at most 63 letters, digits, "-", "_", ".")');
    }
    if (typeof val !== 'string') throw new FieldError(`${path}[${JSON.stringify(k)}]`, `must be a string, got ${describe(val)}`);
    if (val !== '' && (val.length > 63 || !LABEL_NAME.test(val))) {
      throw new FieldError(`${path}[${JSON.stringify(k)}]`, `must be a label value (at most 63 letters, digits, "-", "_", "."), got ${describe(val)}`);
    }
    out[k] = val;
  }
  return out;
}
