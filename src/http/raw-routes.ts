// Routes a server answers on plain node:http objects ahead of express (src/controlplane/mesh-server.ts
// serves them), carried on the express router that also serves them, so a component hands both over as one.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Router } from 'express';

/**
 * A hot route served without express: the mesh server hands a request whose method and URL are
 * exactly these straight to `handle`, with the same request metrics, closing behaviour and JSON 500
 * as a routed one. The router should serve the same route too (other spellings of the path, a query
 * string, … still go through express). The handler gets plain node:http objects: no res.locals.
 */
export interface RawRoute {
  readonly method: string;
  readonly path: string;
  handle(req: IncomingMessage, res: ServerResponse): Promise<void> | void;
}

const RAW_ROUTES = Symbol('cinch.meshServer.rawRoutes');

/** Attaches raw routes to a router, for the mesh server to serve ahead of express. */
export function withRawRoutes<T extends Router>(router: T, routes: readonly RawRoute[]): T {
  Object.defineProperty(router, RAW_ROUTES, { value: routes, enumerable: false });
  return router;
}

export function rawRoutesOf(router: Router): readonly RawRoute[] {
  return (router as Router & { [RAW_ROUTES]?: readonly RawRoute[] })[RAW_ROUTES] ?? [];
}
