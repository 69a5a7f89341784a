// The CA's public API: what the control plane's CA server, the Kubernetes CSR signer and the CLI use.
export { CaError, CaMaterialError } from './errors.ts';
export type { CaErrorCode, MaterialCheck } from './errors.ts';
export { MAX_CSR_PEM_BYTES, checkCsr, checkCsrIdentity, parseCsr } from './csr.ts';
export type { CheckedCsr, CsrSan, SanType } from './csr.ts';
export { DEFAULT_TTL_POLICY, LEAF_BACKDATE_SECONDS, leafValidity, resolveTtl } from './profile.ts';
export type { LeafKeyType, TtlPolicy, Validity } from './profile.ts';
export {
  CA_CERT_FILE,
  CA_FILE_NAMES,
  CA_KEY_FILE,
  CERT_CHAIN_FILE,
  ROOT_CERT_FILE,
  fromSecretData,
  loadCaMaterial,
  toSecretData,
} from './material.ts';
export type { CaFileName, CaFiles, CaKeyType, CaMaterial } from './material.ts';
export { DEFAULT_INTERMEDIATE_DAYS, DEFAULT_ROOT_DAYS, createRootAndIntermediate, createRootCa } from './create.ts';
export type { CreateCaOptions, CreatedCa } from './create.ts';
export { FastLeafSigner } from './fast-signer.ts';
export type { LeafRequest, SignedLeaf, SignerOptions } from './fast-signer.ts';
export { GenericLeafSigner } from './generic-signer.ts';
export { issueServingCertificate } from './serving.ts';
export { ROOT_KEY_FILE, readCaDir } from './files.ts';
export type { ServingCertRequest } from './serving.ts';
