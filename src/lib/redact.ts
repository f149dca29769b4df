/**
 * Credentials never leave a process in a log line, an error message or an admin view.
 * Three shapes carry them in Weft: the password of a URL (`rediss://user:pass@host`),
 * a URL query parameter named like a secret (`?password=...`, ioredis accepts options
 * that way), and config fields named like a secret (`joinToken`). Everything that
 * prints a URL or a config goes through here, so the rule lives in one place.
 */

export const REDACTED = '***';

/** Query parameters whose value is a credential. */
const SECRET_PARAM = /pass|token|secret|auth|key/i;
/** Config fields whose value is a credential (not a path to one: `...File` names a file). */
const SECRET_FIELD = /^(?!.*file$).*(password|token|secret)/i;

/**
 * `redis://user:pass@host:6379/0?password=x` → `redis://user:***@host:6379/0?password=***`.
 * The user name stays (it says which ACL user, and is no secret). A value that does not
 * parse as a URL is replaced whole when it might hold userinfo, since it cannot be
 * taken apart safely.
 */
export function redactUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return url.includes('@') ? '(unparseable URL, redacted)' : url;
  }
  if (u.password) u.password = REDACTED;
  for (const key of [...u.searchParams.keys()]) {
    if (SECRET_PARAM.test(key)) u.searchParams.set(key, REDACTED);
  }
  // URL#searchParams.set re-encodes '*' as %2A; keep the marker readable.
  return u.toString().replace(/%2A%2A%2A/g, REDACTED);
}

/**
 * Every `scheme://user:password@` inside free text (an error message, a JSON log line).
 * A URL's userinfo never holds a raw `"`, `\\`, `<`, `>`, space, `/`, `?`, `#` or `@`
 * (they are percent-encoded), so stopping at them keeps the match inside one JSON
 * string and never eats the next field.
 */
const URL_IN_TEXT = /\b([a-z][a-z0-9+.-]*:\/\/)([^\s/?#@:"\\<>]*):([^\s/?#@"\\<>]*)@/gi;
const PARAM_IN_TEXT = /([?&][^\s=&#"\\]*(?:pass|token|secret|auth|key)[^\s=&#"\\]*=)([^\s&#"\\]*)/gi;

/**
 * Redacts URL passwords and secret query values wherever they appear in `text`.
 * Every log line passes through here, and most carry a `spiffe://` identity but no
 * credential: a URL password cannot match without an '@', a secret value not without
 * an '=', so each pattern runs only when its character is present (a plain scan is
 * ~30 times cheaper than the regex).
 */
export function redactText(text: string): string {
  let out = text;
  if (out.includes('@')) out = out.replace(URL_IN_TEXT, (_m, scheme: string, user: string) => `${scheme}${user}:${REDACTED}@`);
  if (out.includes('=')) out = out.replace(PARAM_IN_TEXT, (_m, head: string) => `${head}${REDACTED}`);
  return out;
}

/**
 * A copy of a config object fit to show (`/config_dump`, `weft` context output):
 * URL fields redacted, secret fields replaced by `<redacted>` (empty stays empty, so a
 * reader still sees whether one was set). Nested plain objects are handled too.
 */
export function redactConfig<T extends object>(config: T): { [K in keyof T]: unknown } {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(config)) {
    if (typeof value === 'string') {
      if (SECRET_FIELD.test(key)) out[key] = value === '' ? '' : '<redacted>';
      else if (/url$/i.test(key)) out[key] = redactUrl(value);
      else out[key] = redactText(value);
    } else if (value !== null && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
      out[key] = redactConfig(value as object);
    } else {
      out[key] = value;
    }
  }
  return out as { [K in keyof T]: unknown };
}
