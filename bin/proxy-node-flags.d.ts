// Types for bin/proxy-node-flags.js (plain JavaScript so that `cinch proxy` never loads the type stripper).
export declare const PROXY_NODE_FLAGS: readonly string[];
