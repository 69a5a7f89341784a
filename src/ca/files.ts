// The cacerts layout on disk (`certs/` locally, a mounted Secret in a pod): the only file I/O in
// src/ca. Keys are written 0600 and nothing is overwritten unless asked.
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { CA_CERT_FILE, CA_FILE_NAMES, CA_KEY_FILE, CERT_CHAIN_FILE, ROOT_CERT_FILE } from './material.ts';
import type { CreatedCa } from './create.ts';

/** The root's key when an intermediate signs: kept next to the cacerts files, never put in the Secret. */
export const ROOT_KEY_FILE = 'root-key.pem';

/** Reads whichever cacerts files exist (absent ones are undefined, so loadCaMaterial can say which). */
export function readCaDir(dir: string): Record<string, string | undefined> {
  const data: Record<string, string | undefined> = {};
  for (const name of CA_FILE_NAMES) {
    const file = path.join(dir, name);
    data[name] = existsSync(file) ? readFileSync(file, 'utf8') : undefined;
  }
  return data;
}

export class CaFilesExistError extends Error {
  override readonly name = 'CaFilesExistError';
  readonly existing: readonly string[];
  constructor(existing: readonly string[]) {
    super(`refusing to overwrite ${existing.join(', ')} (use --force to replace them)`);
    this.existing = existing;
  }
}

/** Writes the created CA into `dir`; returns the paths written. Throws CaFilesExistError unless `force`. */
export function writeCaDir(dir: string, created: CreatedCa, force = false): string[] {
  const targets = [...CA_FILE_NAMES, ROOT_KEY_FILE].map((name) => path.join(dir, name));
  const existing = targets.filter((file) => existsSync(file));
  if (existing.length > 0 && !force) throw new CaFilesExistError(existing);
  mkdirSync(dir, { recursive: true });

  const files: Array<[string, string, number]> = [
    [CA_KEY_FILE, created.files[CA_KEY_FILE], 0o600],
    [CA_CERT_FILE, created.files[CA_CERT_FILE], 0o644],
    [CERT_CHAIN_FILE, created.files[CERT_CHAIN_FILE], 0o644],
    [ROOT_CERT_FILE, created.files[ROOT_CERT_FILE], 0o644],
  ];
  if (created.rootKeyPem) files.unshift([ROOT_KEY_FILE, created.rootKeyPem, 0o600]);
  // A root key left from an earlier --intermediate run would not match the new root.
  else rmSync(path.join(dir, ROOT_KEY_FILE), { force: true });

  const written: string[] = [];
  for (const [name, content, mode] of files) {
    const file = path.join(dir, name);
    // 'wx' fails if the file appeared since the check. `mode` applies only on creation, so an
    // existing file is narrowed before the key goes into it.
    if (force && existsSync(file)) chmodSync(file, mode);
    writeFileSync(file, content, { mode, flag: force ? 'w' : 'wx' });
    chmodSync(file, mode);
    written.push(file);
  }
  return written;
}
