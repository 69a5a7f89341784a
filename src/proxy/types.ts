// The seams of the proxy's data path: what the identity agent, the config stream and the
// interception layer hand to the inbound/outbound listeners. Everything here is injected, so the
// listeners run on loopback in tests with no iptables, no control plane and no CA.
import type net from 'node:net';
import type tls from 'node:tls';

export type PeerAuthenticationMode = 'STRICT' | 'PERMISSIVE' | 'DISABLE';

/** Where a redirected connection was going (SO_ORIGINAL_DST; src/proxy/original-dst.ts). */
export interface OriginalDestination {
  readonly address: string;
  readonly port: number;
}

/** Throws when the socket has no original destination (not redirected); the connection is then closed. */
export type OriginalDestinationLookup = (socket: net.Socket) => OriginalDestination;

// ---------------------------------------------------------------- certificates

/** One generation of workload credentials. The agent's WorkloadCertificate has this shape. */
export interface MeshCredentials {
  readonly spiffeId: string;
  readonly keyPem: string;
  /** Leaf first, then intermediates. */
  readonly certChainPem: string;
  /** Roots that peers must chain to (the mesh trust bundle, possibly several during root rotation). */
  readonly trustBundle: readonly string[];
  /** Client-side context: key + chain, the bundle as the only CA, TLS >= 1.2 (agent's meshSecureContext). */
  readonly secureContext: tls.SecureContext;
}

export interface TlsMaterial {
  /** Credentials for the next handshake; undefined until the first certificate arrived. */
  current(): MeshCredentials | undefined;
  /** Called after each rotation (and bundle change); returns the unsubscribe function. */
  onChange(listener: (credentials: MeshCredentials) => void): () => void;
}

/** The simplest TlsMaterial: the agent pushes each new certificate with `update` (`agent.on('rotated', m.update)`). */
export class MutableTlsMaterial implements TlsMaterial {
  private credentials: MeshCredentials | undefined;
  private readonly listeners = new Set<(credentials: MeshCredentials) => void>();

  constructor(initial?: MeshCredentials) {
    this.credentials = initial;
  }

  current(): MeshCredentials | undefined {
    return this.credentials;
  }

  readonly update = (credentials: MeshCredentials): void => {
    this.credentials = credentials;
    for (const listener of this.listeners) listener(credentials);
  };

  onChange(listener: (credentials: MeshCredentials) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}

/** TLS 1.2 limited to forward-secret AEAD suites (Istio's BuildInboundTLS list); TLS 1.3 suites stay at OpenSSL's defaults. */
export const MESH_TLS_CIPHERS = [
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

/** Options for a mesh TLS endpoint (server side: tls.Server#setSecureContext needs options, not a context). */
export function meshTlsOptions(credentials: MeshCredentials): tls.SecureContextOptions {
  return {
    key: credentials.keyPem,
    cert: credentials.certChainPem,
    ca: [...credentials.trustBundle],
    minVersion: 'TLSv1.2',
    maxVersion: 'TLSv1.3',
    ciphers: MESH_TLS_CIPHERS,
  };
}

// ---------------------------------------------------------------- ALPN

// Mesh clients name what they carry inside the tunnel, as Istio's istio-http/1.1, istio-h2 and
// istio do: the server then needs no sniffing, and in PERMISSIVE a cinch-* ALPN is what tells a mesh
// handshake apart from an app's own TLS (which is passed through untouched). `http/1.1` and `h2` are
// accepted too so that ordinary mTLS clients (curl --cert) work under STRICT; http/1.1 is preferred
// because every HTTP app speaks it, while h2 would need an h2c-capable app (gRPC clients offer only h2).
export const ALPN_HTTP1 = 'cinch-http/1.1';
export const ALPN_H2 = 'cinch-h2';
export const ALPN_TCP = 'cinch-tcp';
export const MESH_ALPNS: readonly string[] = [ALPN_H2, ALPN_HTTP1, ALPN_TCP];
/** Server preference order: mesh protocols first. */
export const INBOUND_ALPNS: readonly string[] = [...MESH_ALPNS, 'http/1.1', 'h2'];

// ---------------------------------------------------------------- authorization

/** The proxy's own workload, as policies select it. */
export interface WorkloadInfo {
  readonly name?: string;
  readonly namespace: string;
  readonly labels: Readonly<Record<string, string>>;
}

export interface AuthzHttpRequest {
  readonly protocol: 'http';
  readonly method: string;
  /** Normalized path without the query string. */
  readonly path: string;
  readonly host: string;
  /** Lower-case names, as node:http gives them (set-cookie is the only array). HTTP/2 adds the pseudo-headers. */
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly sni?: string;
}

export interface AuthzTcpRequest {
  readonly protocol: 'tcp';
  readonly sni?: string;
}

/** Mirrors the DESIGN's `cinch authz check` REQUEST.json. */
export interface AuthzRequest {
  readonly destination: {
    readonly namespace: string;
    readonly labels: Readonly<Record<string, string>>;
    readonly port: number;
    readonly ip?: string;
  };
  readonly source: {
    /** SPIFFE ID without `spiffe://`; absent for a plaintext (or TLS-passthrough) caller. */
    readonly principal?: string;
    readonly namespace?: string;
    readonly ip: string;
  };
  /** Absent for TCP without SNI; `{protocol: 'tcp', sni}` for TCP with SNI. */
  readonly request?: AuthzHttpRequest | AuthzTcpRequest;
}

export interface AuthzDecision {
  readonly allow: boolean;
  /** `namespace/name` of the deciding policy, or null. */
  readonly policy: string | null;
  readonly reason: string;
}

/** Read through a getter on every decision, so a pushed config applies from the next request on. */
export interface InboundConfig {
  readonly trustDomain: string;
  readonly workload: WorkloadInfo;
  modeForPort(port: number): PeerAuthenticationMode;
  authorize(request: AuthzRequest): AuthzDecision;
  /** 'tcp' skips protocol sniffing on plaintext (server-first protocols such as MySQL or SMTP). Default 'auto'. */
  protocolForPort?(port: number): 'tcp' | 'auto';
}

export type MeshedDestination = {
  readonly meshed: true;
  /** Full SPIFFE IDs (`spiffe://…`) the server may present. */
  readonly allowedSpiffeIds: readonly string[];
  /** 'tcp' skips sniffing the app's first bytes (server-first protocols). Default 'auto'. */
  readonly protocol?: 'tcp' | 'auto';
  /** For metric labels only. */
  readonly workload?: { readonly name?: string; readonly namespace?: string };
  readonly service?: string;
};

export type OutboundDestination = { readonly meshed: false } | MeshedDestination;

export interface OutboundConfig {
  destinationFor(ip: string, port: number): OutboundDestination;
}

/** Strips the IPv4-mapped prefix a dual-stack listener reports (`::ffff:10.0.0.1`). */
export function plainIp(address: string | undefined): string {
  if (address === undefined) return '';
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}
