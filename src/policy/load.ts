// The one I/O piece of src/policy: reads policy YAML (a file, or every .yaml/.yml/.json file under
// a folder) into plain objects for buildPolicySet. Kept apart so the core stays pure.
import fs from 'node:fs/promises';
import path from 'node:path';
import { parseAllDocuments } from 'yaml';

export interface LoadedDocument {
  /** `file` or `file#index` for multi-document files, for messages. */
  origin: string;
  value: unknown;
}

export class PolicyLoadError extends Error {}

const POLICY_FILE = /\.(ya?ml|json)$/i;

async function listFiles(root: string): Promise<string[]> {
  const entries = await fs.readdir(root, { withFileTypes: true });
  const out: string[] = [];
  for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    const full = path.join(root, e.name);
    if (e.isDirectory()) out.push(...(await listFiles(full)));
    else if (e.isFile() && POLICY_FILE.test(e.name)) out.push(full);
  }
  return out;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * kubectl defaults a missing namespace to `default`; the same here, so a file applies offline as
 * it would with `kubectl apply -f`. `kind: List` (what `kubectl get -o yaml` prints) is unpacked.
 */
function expand(value: unknown, origin: string): LoadedDocument[] {
  if (isObject(value) && value.kind === 'List' && Array.isArray(value.items)) {
    return value.items.flatMap((item, i) => expand(item, `${origin}.items[${i}]`));
  }
  if (isObject(value) && isObject(value.metadata) && value.metadata.namespace === undefined) {
    return [{ origin, value: { ...value, metadata: { ...value.metadata, namespace: 'default' } } }];
  }
  return [{ origin, value }];
}

export async function loadPolicyDocuments(target: string): Promise<LoadedDocument[]> {
  let stat;
  try {
    stat = await fs.stat(target);
  } catch (err) {
    throw new PolicyLoadError(`cannot read policies at ${target}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  const files = stat.isDirectory() ? await listFiles(target) : [target];
  const docs: LoadedDocument[] = [];
  for (const file of files) {
    let text: string;
    try {
      text = await fs.readFile(file, 'utf8');
    } catch (err) {
      throw new PolicyLoadError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    }
    const documents = parseAllDocuments(text);
    documents.forEach((doc, i) => {
      if (doc.errors.length > 0) throw new PolicyLoadError(`${file}: invalid YAML: ${doc.errors[0].message}`);
      const value: unknown = doc.toJS();
      if (value === null || value === undefined) return; // empty document (e.g. a trailing ---)
      docs.push(...expand(value, documents.length > 1 ? `${file}#${i}` : file));
    });
  }
  return docs;
}
