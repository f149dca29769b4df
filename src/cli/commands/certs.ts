/**
 * `weft certs`: the workload certificates each ztunnel holds (GET /certs, the same
 * list /config_dump carries), one row per certificate of each chain, as
 * `istioctl ztunnel-config certificates` shows them: the leaf, then its CA chain.
 */
import { X509Certificate } from 'node:crypto';
import { parse } from '../../lib/options';
import type { CertificateInfo, CertificatesResponse } from '../../ztunnel/admin-types';
import { hasArray, type NodeAnswer } from '../admin-client';
import { adminViewOptions, runAdminView, type AdminView } from '../admin-command';
import { defineCommand, noPositionals } from '../io';
import type { Table } from '../output';
import { byKey } from '../registry-command';

export type CertType = 'Leaf' | 'Intermediate' | 'Root';

export interface CertRow {
  node: string;
  identity: string;
  type: CertType;
  /** The certificate manager's state (Ready, Refreshing, Expired, ...); for CA rows, the leaf's. */
  state: string;
  /** Now within [notBefore, notAfter]. */
  valid: boolean;
  serial?: string;
  notAfter?: string;
  notBefore?: string;
  subject?: string;
}

/** Serial, validity and subject of one PEM; undefined fields when it does not parse. */
function pemFacts(pem: string): { serial?: string; notBefore?: string; notAfter?: string; subject?: string } {
  try {
    const x = new X509Certificate(pem);
    const facts: { serial?: string; notBefore?: string; notAfter?: string; subject?: string } = {
      serial: x.serialNumber,
      notBefore: new Date(x.validFrom).toISOString(),
      notAfter: new Date(x.validTo).toISOString(),
    };
    // Workload certificates have an empty subject (the identity is the URI SAN).
    if (x.subject) facts.subject = x.subject.replace(/\n/g, ', ');
    return facts;
  } catch {
    return {};
  }
}

function isValidAt(notBefore: string | undefined, notAfter: string | undefined, now: number): boolean {
  if (!notBefore || !notAfter) return false;
  return Date.parse(notBefore) <= now && now <= Date.parse(notAfter);
}

export function certRows(node: string, info: CertificateInfo, now: number): CertRow[] {
  const chain = info.certChainPem ?? [];
  const leafFacts = chain[0] ? pemFacts(chain[0]) : {};
  const leaf: CertRow = { node, identity: info.identity, type: 'Leaf', state: info.state, valid: false };
  const serial = info.serial ?? leafFacts.serial;
  const notBefore = info.notBefore ?? leafFacts.notBefore;
  const notAfter = info.notAfter ?? leafFacts.notAfter;
  if (serial) leaf.serial = serial;
  if (notBefore) leaf.notBefore = notBefore;
  if (notAfter) leaf.notAfter = notAfter;
  if (leafFacts.subject) leaf.subject = leafFacts.subject;
  leaf.valid = isValidAt(notBefore, notAfter, now);
  const rows = [leaf];
  chain.slice(1).forEach((pem, i) => {
    const f = pemFacts(pem);
    const row: CertRow = {
      node, identity: info.identity, type: i === chain.length - 2 ? 'Root' : 'Intermediate', state: info.state,
      valid: isValidAt(f.notBefore, f.notAfter, now), ...f,
    };
    rows.push(row);
  });
  return rows;
}

export function certItems(answers: readonly NodeAnswer<CertificatesResponse>[], now: number): CertRow[] {
  const sorted = answers.flatMap((a) => a.data.certificates.map((c) => ({ node: a.node, c })))
    .sort(byKey(({ node, c }) => `${node}\u0000${c.identity}`));
  return sorted.flatMap(({ node, c }) => certRows(node, c, now));
}

export function certsTable(rows: readonly CertRow[]): Table {
  return {
    headers: ['NODE', 'NAME', 'TYPE', 'STATUS', 'VALID CERT', 'SERIAL NUMBER', 'NOT AFTER', 'NOT BEFORE'],
    rows: rows.map((r) => [r.node, r.identity, r.type, r.state, r.valid, r.serial, r.notAfter, r.notBefore]),
  };
}

export function certsView(opts: { leafOnly?: boolean } = {}): AdminView<CertificatesResponse> {
  return {
    title: 'weft certs',
    path: '/certs',
    check: hasArray('certificates'),
    build(answers, now) {
      const items = certItems(answers, now).filter((r) => !opts.leafOnly || r.type === 'Leaf');
      return { table: certsTable(items), data: { items }, empty: 'No certificates held.' };
    },
  };
}

const USAGE = 'weft certs [--node NODE] [--leaf-only] [-o table|json|yaml] [-w]';

export default defineCommand({
  usage: USAGE,
  summary: "list the workload certificates each ztunnel holds: identity, state, validity, serial",
  description: 'STATUS is the certificate manager\'s state: Ready, Refreshing (rotation at half-life under way),\n'
    + 'Pending, Failed (never obtained; retrying) or Expired. VALID CERT says whether now is within the\n'
    + 'certificate\'s validity. Each leaf is followed by the CA certificates of its chain.',
  specs: {
    ...adminViewOptions,
    leafOnly: { flag: 'leaf-only', boolean: true, default: false, description: 'show only the workload (leaf) certificates', parse: parse.bool() },
  },
  async run({ values, positionals }, io) {
    noPositionals(positionals, USAGE);
    return runAdminView(values, io, certsView({ leafOnly: values.leafOnly }));
  },
});
