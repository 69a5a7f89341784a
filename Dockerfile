# syntax=docker/dockerfile:1
# One image, one entry point: `cinch control-plane` (the Deployment), `cinch proxy` and `cinch init`
# (the containers the injector adds, with args ['proxy'] and ['init', …]).
#
# Node 24 runs the TypeScript in src/ directly (type stripping; Node refuses to strip files under
# node_modules, and only /app/src is TypeScript), so the CLI needs no compile step. The sidecar is the
# exception: `cinch proxy` runs from dist/proxy.js, one bundled JavaScript file (bin/build-dist.ts, made in
# the build stage), which keeps its memory down; bin/cinch.js falls back to the sources if it were stale.
# Build where a container engine runs: docker build -t cinch .
# For reproducible builds, pin the base by digest as well: node:24-slim@sha256:…

# --- dependencies: production only (no typescript, eslint, or the `node` devDependency) ---
# Deliberately not --platform=$BUILDPLATFORM: koffi's native binary comes from an optional
# per-platform package, so npm must run on the platform the image is for.
FROM node:24-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# Install scripts stay on: koffi's checks that its prebuilt binary loads.
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

# --- the sidecar bundle: needs the dev dependencies (esbuild), which stay in this stage ---
FROM node:24-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY bin/ ./bin/
COPY src/ ./src/
RUN node bin/build-dist.ts

# --- runtime ---
FROM node:24-slim
# iptables: `cinch init` writes the pod's capture rules with iptables-restore/ip6tables-restore and reads them
# back with *-save, choosing the nft or legacy backend the pod already uses (Debian ships both variants).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends iptables \
 && rm -rf /var/lib/apt/lists/*

# The control plane's user. Numeric USER so runAsNonRoot can be verified by the kubelet; the injected
# securityContext overrides it for the proxy (uid 1337, whose traffic is never captured) and init (root,
# NET_ADMIN and NET_RAW only).
RUN groupadd --system --gid 10001 cinch \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin cinch

WORKDIR /app
ENV NODE_ENV=production
COPY --from=deps /app/node_modules ./node_modules
COPY package.json package-lock.json ./
COPY bin/ ./bin/
COPY src/ ./src/
# After the sources, so the bundle is newer than every file it was made from.
COPY --from=build /app/dist ./dist/

USER 10001:10001
# 15017 webhook, 15012 CA and config, 15014 metrics and health (control plane);
# 15001/15006 capture, 15020 stats and probes, 15021 readiness (proxy).
EXPOSE 15017 15012 15014 15001 15006 15020 15021
ENTRYPOINT ["node", "/app/bin/cinch.js"]
CMD ["--help"]
