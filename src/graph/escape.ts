/**
 * Escaping of names and labels for each output format. Names come from the cluster
 * (namespaces, workloads, Services) and from what proxies report, so a picture must
 * never let one of them close a tag, a string or a statement.
 */

/** Text and attribute values in XML/SVG/HTML; control characters XML 1.0 forbids are dropped. */
export function escapeXml(s: string): string {
  return s
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/g, '')
    .replace(/[&<>"']/g, (c) => XML_ENTITIES[c]!);
}

const XML_ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/**
 * A DOT double-quoted string, quotes included. Backslashes are doubled because Graphviz
 * reads `\N`, `\G`, `\l` in labels as escapes; line breaks become `\n`.
 */
export function dotString(s: string): string {
  const body = s
    .replace(/\\/g, '\\\\')
    .replace(/"/g, '\\"')
    .replace(/\r\n|\r|\n/g, '\\n')
    .replace(/[\u0000-\u001f]/g, '');
  return `"${body}"`;
}

/**
 * Mermaid label text: everything but letters, digits, space and `./_%:,+-` becomes
 * Mermaid's entity code `#<decimal>;`, which it renders as the character. That covers
 * quotes, brackets, pipes, `#`, `;`, `<`/`>` (Mermaid labels are HTML) and line breaks.
 */
export function mermaidText(s: string): string {
  let out = '';
  for (const ch of s) {
    out += /^[A-Za-z0-9 ./_%:,+-]$/.test(ch) ? ch : `#${ch.codePointAt(0)};`;
  }
  return out;
}
