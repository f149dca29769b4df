/**
 * A small XML well-formedness check for the SVG the graph renderer writes (no XML
 * parser in the dependencies): one root element, tags nested and closed, attribute
 * values quoted and unique per element, no raw `<` or `&` in text or values, only
 * the predefined and numeric entities, no characters XML 1.0 forbids. Returns the
 * problems found (empty when well-formed) and the element names seen.
 */
const NAME = /^[A-Za-z_:][A-Za-z0-9._:-]*$/;
const ENTITY = /&(?:amp|lt|gt|quot|apos|#[0-9]+|#x[0-9A-Fa-f]+);/g;
const FORBIDDEN = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/;

export function xmlProblems(xml: string): { problems: string[]; elements: string[] } {
  const problems: string[] = [];
  const elements: string[] = [];
  const stack: string[] = [];
  let roots = 0;
  let i = 0;
  const checkText = (s: string, where: string) => {
    if (FORBIDDEN.test(s)) problems.push(`forbidden character in ${where}`);
    const rest = s.replace(ENTITY, '');
    if (rest.includes('&')) problems.push(`bare & or unknown entity in ${where}: ${JSON.stringify(s.slice(0, 60))}`);
    if (rest.includes('<')) problems.push(`raw < in ${where}`);
  };
  if (xml.startsWith('<?xml')) i = xml.indexOf('?>') + 2;
  while (i < xml.length) {
    const lt = xml.indexOf('<', i);
    const text = xml.slice(i, lt === -1 ? xml.length : lt);
    if (stack.length === 0 && text.trim() !== '') problems.push(`text outside the root: ${JSON.stringify(text.slice(0, 40))}`);
    checkText(text, 'text');
    if (lt === -1) break;
    if (xml.startsWith('<!--', lt)) {
      const end = xml.indexOf('-->', lt + 4);
      if (end === -1) { problems.push('unclosed comment'); break; }
      if (xml.slice(lt + 4, end).includes('--')) problems.push('-- inside a comment');
      i = end + 3;
      continue;
    }
    if (xml.startsWith('<![CDATA[', lt)) {
      const end = xml.indexOf(']]>', lt);
      if (end === -1) { problems.push('unclosed CDATA'); break; }
      i = end + 3;
      continue;
    }
    // Find the tag's end, skipping quoted attribute values (they may hold '>').
    let j = lt + 1;
    let quote = '';
    for (; j < xml.length; j++) {
      const c = xml[j]!;
      if (quote) { if (c === quote) quote = ''; } else if (c === '"' || c === "'") quote = c;
      else if (c === '>') break;
      else if (c === '<') { problems.push(`< inside a tag at ${j}`); break; }
    }
    if (j >= xml.length) { problems.push('unclosed tag'); break; }
    const tag = xml.slice(lt + 1, j);
    i = j + 1;
    if (tag.startsWith('/')) {
      const name = tag.slice(1).trim();
      const open = stack.pop();
      if (open !== name) problems.push(`</${name}> closes <${open ?? 'nothing'}>`);
      continue;
    }
    const selfClosing = tag.endsWith('/');
    const body = selfClosing ? tag.slice(0, -1) : tag;
    const m = /^([^\s]+)([\s\S]*)$/.exec(body);
    const name = m?.[1] ?? '';
    if (!NAME.test(name)) problems.push(`bad element name ${JSON.stringify(name)}`);
    elements.push(name);
    let attrs = (m?.[2] ?? '').trim();
    const seen = new Set<string>();
    while (attrs) {
      const a = /^([^\s=]+)\s*=\s*("([^"]*)"|'([^']*)')\s*/.exec(attrs);
      if (!a) { problems.push(`bad attribute syntax in <${name}>: ${JSON.stringify(attrs.slice(0, 40))}`); break; }
      if (!NAME.test(a[1]!)) problems.push(`bad attribute name ${a[1]}`);
      if (seen.has(a[1]!)) problems.push(`duplicate attribute ${a[1]} in <${name}>`);
      seen.add(a[1]!);
      checkText(a[3] ?? a[4] ?? '', `attribute ${a[1]}`);
      attrs = attrs.slice(a[0].length);
    }
    if (stack.length === 0) roots++;
    if (!selfClosing) stack.push(name);
  }
  if (stack.length) problems.push(`unclosed elements: ${stack.join(' > ')}`);
  if (roots !== 1) problems.push(`${roots} root elements`);
  return { problems, elements };
}
