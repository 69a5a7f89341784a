// The one place @peculiar/x509 is loaded: its DI container needs the Reflect polyfill first,
// and its crypto provider is set to Node's WebCrypto explicitly rather than found on globalThis.
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto);

export { x509 };
