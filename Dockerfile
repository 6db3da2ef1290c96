# syntax=docker/dockerfile:1
# The Outpost agent as a container: docker build -t outpost . && docker run -v outpost:/var/lib/outpost outpost run

FROM node:20-bookworm-slim AS build
WORKDIR /src
# better-sqlite3 compiles from source when no prebuilt binary can be fetched.
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY bin ./bin
COPY src ./src
COPY templates ./templates
RUN npm run build && npm prune --omit=dev

FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    OUTPOST_CONFIG_DIR=/var/lib/outpost
WORKDIR /opt/outpost
COPY --from=build /src/package.json /src/oclif.manifest.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY --from=build /src/bin ./bin
COPY --from=build /src/templates ./templates
RUN useradd --system --home-dir /var/lib/outpost --create-home --shell /usr/sbin/nologin outpost \
 && ln -s /opt/outpost/bin/run.js /usr/local/bin/outpost
USER outpost
VOLUME /var/lib/outpost
EXPOSE 9464
# /healthz answers once the agent loop runs; set OUTPOST_METRICS_LISTEN=0.0.0.0:9464 to scrape /metrics from outside.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:9464/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# Node's flags as the systemd unit gives them (src/setup/service.ts, AGENT_NODE_FLAGS): a young generation of 2 × 4 MiB.
ENTRYPOINT ["node", "--max-semi-space-size=4", "/opt/outpost/bin/run.js"]
CMD ["run"]
