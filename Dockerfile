# Multi-stage build: compile with the full toolchain, run on a slim Debian with only the binary.
# The build needs no database: sqlx reads the committed .sqlx/ query data (SQLX_OFFLINE).

FROM rust:1-bookworm AS build
WORKDIR /src
ENV SQLX_OFFLINE=true
COPY Cargo.toml Cargo.lock build.rs ./
COPY .cargo .cargo
COPY .sqlx .sqlx
COPY migrations migrations
COPY src src
# The web client and the docs page, built by npm and committed: embedded by build.rs, so the
# image needs no Node.js.
COPY clients/web/dist clients/web/dist
# The workspace's other member (the load generator) must be present for cargo to load it.
COPY bench bench
RUN cargo build --release --locked --bin huddle

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 huddle
COPY --from=build /src/target/release/huddle /usr/local/bin/huddle
USER huddle
ENV HOST=0.0.0.0 PORT=3000
EXPOSE 3000
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD curl -fsS http://127.0.0.1:3000/healthz || exit 1
ENTRYPOINT ["huddle"]
CMD ["serve"]
