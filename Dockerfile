# The one Weft image: `weft ca`, `weft controller` and `weft ztunnel` (daemonset/).
#   docker build -t weft:dev .
# Build stage: the full dev toolchain compiles TypeScript and the native
# getsockopt(SO_ORIGINAL_DST) and memory-reclaim helpers (the full node image has C and
# C++ compilers and Node's headers), then drops dev packages.
#
# One exact Node version for both stages: native/build/weft_memory.node is compiled
# against V8's C++ headers, which have no stable ABI, so it must run on the very Node
# it was built with. A floating tag (node:20) can give the two stages different patch
# releases, and the ztunnel would then run without memory reclaim (or crash loading it).
ARG NODE_VERSION=20.20.2
FROM node:${NODE_VERSION}-bookworm AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src/ ./src/
COPY native/ ./native/
COPY scripts/build-native.js ./scripts/
RUN npx tsc -p tsconfig.json && node scripts/build-native.js && test -f native/build/weft_native.node && test -f native/build/weft_memory.node && test -f native/build/weft_send_buffer.node && npm prune --omit=dev

# Runtime: Node plus the tools the ztunnel runs for capture (iptables, ip). The CA and
# the controller run as the image's "node" user (uid 1000, set in their manifests);
# only the ztunnel runs as root (daemonset/ztunnel.yaml says why).
FROM node:${NODE_VERSION}-bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables iproute2 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
ENV NODE_ENV=production
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules/ ./node_modules/
COPY --from=build /app/dist/ ./dist/
COPY --from=build /app/native/build/ ./native/build/
# Loaded at run time by dist/ca/proto.js and dist/telemetry/otlp-proto.js (../../proto).
COPY proto/ ./proto/
USER 1000
ENTRYPOINT ["node", "/app/dist/cli/main.js"]
