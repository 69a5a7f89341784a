// Istio's string matching, used by every string field of a policy:
// `abc` exact, `abc*` prefix, `*abc` suffix, `*` presence (any non-empty value).
// A leading `*` wins over a trailing one (`*abc*` is the suffix `abc*`), as in Istio.

export type StringMatcher = (value: string | undefined) => boolean;

export function compileStringMatcher(pattern: string, ignoreCase = false): StringMatcher {
  const fold = (s: string): string => (ignoreCase ? s.toLowerCase() : s);
  if (pattern === '*') return (value) => value !== undefined && value !== '';
  if (pattern.startsWith('*')) {
    const suffix = fold(pattern.slice(1));
    return (value) => value !== undefined && fold(value).endsWith(suffix);
  }
  if (pattern.endsWith('*')) {
    const prefix = fold(pattern.slice(0, -1));
    return (value) => value !== undefined && fold(value).startsWith(prefix);
  }
  const exact = fold(pattern);
  return (value) => value !== undefined && fold(value) === exact;
}

/** One matcher for a list of patterns: true when any of them matches (values in a field are ORed). */
export function anyOf(patterns: readonly string[], ignoreCase = false): StringMatcher {
  const exact = new Set<string>();
  const others: StringMatcher[] = [];
  for (const p of patterns) {
    if (p !== '*' && !p.startsWith('*') && !p.endsWith('*')) exact.add(ignoreCase ? p.toLowerCase() : p);
    else others.push(compileStringMatcher(p, ignoreCase));
  }
  // Exact values (the common case: principals, methods) become one Set lookup.
  return (value) => {
    if (value === undefined) return false;
    if (exact.size > 0 && exact.has(ignoreCase ? value.toLowerCase() : value)) return true;
    for (const m of others) if (m(value)) return true;
    return false;
  };
}
