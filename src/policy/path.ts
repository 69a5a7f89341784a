// Request paths as the policy sees them, and `paths` patterns (Istio's string forms plus the
// `{*}` / `{**}` path templates).
//
// Policies are matched against the normalized path, as Istio's default (`BASE`) normalization
// does: query and fragment stripped, `\` read as `/`, percent-encoded unreserved characters
// decoded, dot segments removed. `%2F` stays encoded. A proxy that enforces on the normalized
// path must forward that same path, or `/public/../admin` slips past a DENY on `/admin`.
import { compileStringMatcher, type StringMatcher } from './match.ts';

const UNRESERVED = /[A-Za-z0-9\-._~]/;

function decodeUnreserved(path: string): string {
  if (!path.includes('%')) return path;
  return path.replace(/%([0-9A-Fa-f]{2})/g, (whole, hex: string) => {
    const ch = String.fromCharCode(parseInt(hex, 16));
    return UNRESERVED.test(ch) ? ch : whole.toUpperCase();
  });
}

/** RFC 3986 §5.2.4: resolves `.` and `..` segments; never climbs above the root. */
function removeDotSegments(path: string): string {
  const segments = path.split('/');
  const out: string[] = [];
  for (let i = 1; i < segments.length; i++) {
    const s = segments[i];
    const last = i === segments.length - 1;
    if (s === '.') {
      if (last) out.push('');
    } else if (s === '..') {
      out.pop();
      if (last) out.push('');
    } else {
      out.push(s);
    }
  }
  return '/' + out.join('/');
}

// Characters that may need work once the query is gone; most paths have none and come back as they are.
const NEEDS_WORK = /[%\\]|\/\./;

export function normalizePath(raw: string): string {
  let end = raw.length;
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c === 63 /* ? */ || c === 35 /* # */) {
      end = i;
      break;
    }
  }
  let path = end === raw.length ? raw : raw.slice(0, end);
  if (path.charCodeAt(0) === 47 /* / */ && !NEEDS_WORK.test(path)) return path;
  // Absolute-form request targets (`http://host/p`, sent to proxies) carry the path after the authority.
  const scheme = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/]*/.exec(path);
  if (scheme) path = path.slice(scheme[0].length) || '/';
  if (!path.startsWith('/') && !path.startsWith('\\')) return path; // `*` (OPTIONS) and the like
  path = decodeUnreserved(path.replace(/\\/g, '/'));
  if (!path.includes('/.')) return path;
  return removeDotSegments(path);
}

const ONE_SEGMENT = '{*}';
const ANY_SEGMENTS = '{**}';

export function isPathTemplate(pattern: string): boolean {
  return pattern.includes(ONE_SEGMENT) || pattern.includes(ANY_SEGMENTS);
}

/** Returns why a `{*}`/`{**}` template is not supported, or undefined when it is fine. */
export function pathTemplateProblem(pattern: string): string | undefined {
  if (!isPathTemplate(pattern)) return undefined;
  if (!pattern.startsWith('/')) return 'a path template must start with "/"';
  const tokens = pattern.split(/(\{\*\*\}|\{\*\})/);
  let sawAny = false;
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    if (t === ONE_SEGMENT || t === ANY_SEGMENTS) {
      if (sawAny) return '"{**}" must be the last operator of a path template';
      if (!tokens[i - 1].endsWith('/')) return `"${t}" must be a whole path segment (preceded by "/")`;
      const next = tokens[i + 1];
      if (t === ONE_SEGMENT && next !== '' && !next.startsWith('/')) return '"{*}" must be a whole path segment';
      if (t === ANY_SEGMENTS) sawAny = true;
    } else if (/[*{}]/.test(t)) {
      return 'only "{*}" and "{**}" are supported in a path template (no "*", named variables or other braces)';
    }
  }
  return undefined;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Compiles one `paths` value: a template, or Istio's exact/prefix/suffix/presence forms. */
export function compilePathMatcher(pattern: string): StringMatcher {
  if (!isPathTemplate(pattern)) return compileStringMatcher(pattern);
  // `{*}` is one non-empty segment; `{**}` is zero or more characters including `/`.
  const source = pattern
    .split(/(\{\*\*\}|\{\*\})/)
    .map((t) => (t === ONE_SEGMENT ? '[^/]+' : t === ANY_SEGMENTS ? '.*' : escapeRegExp(t)))
    .join('');
  const re = new RegExp(`^${source}$`);
  return (value) => value !== undefined && re.test(value);
}
