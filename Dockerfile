# estore: one image holding every program; the command picks the service.
#
#   docker build -t estore .
#   docker run --rm estore estore-health --help
#
# compose.yaml builds it once and runs estore-account, estore-token,
# estore-auth, estore-catalog and estore-edge from it. Configuration comes from the
# environment at run time (see .env.example); nothing secret is in the image.

# ---- build ------------------------------------------------------------------
FROM debian:12 AS build

# What compiling needs, nothing more: the compiler, CMake and the -dev
# packages of the libraries the programs link (tests/deploy/check_dockerfile.py
# checks the runtime list below against what the binaries link).
# john-data only for its password list, copied into the runtime stage.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      gcc libc6-dev make cmake pkg-config \
      libnghttp2-dev libprotobuf-c-dev libevent-dev libssl-dev \
      libpq-dev libhiredis-dev libargon2-dev libjansson-dev libhttp-parser-dev \
      libroaring-dev john-data \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .
# ESTORE_TESTS=OFF: the programs only (generated/ is checked in, so no
# protoc either). cmake --install lays out bin/ and share/estore/.
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=Release -DESTORE_TESTS=OFF \
 && cmake --build /build -j "$(nproc)" \
 && cmake --install /build --prefix /opt/estore --strip

# ---- runtime ----------------------------------------------------------------
FROM debian:12-slim

# The shared libraries the programs link (one package each, as the
# binaries' NEEDED entries say), and nothing else: no compiler, no shell
# tools beyond the base image's.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libnghttp2-14 libprotobuf-c1 libevent-2.1-7 libevent-pthreads-2.1-7 \
      libssl3 libpq5 libhiredis0.14 libargon2-1 libjansson4 libhttp-parser2.9 \
      libroaring0 \
 && rm -rf /var/lib/apt/lists/*

# A fixed numeric UID, so Kubernetes' runAsNonRoot can verify it.
RUN groupadd --system --gid 10001 estore \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin estore

COPY --from=build /opt/estore /opt/estore
# estore-auth's default AUTH_PASSWORD_DENYLIST.
COPY --from=build /usr/share/john/password.lst /usr/share/john/password.lst

ENV PATH=/opt/estore/bin:$PATH \
    ACCOUNT_MIGRATIONS_DIR=/opt/estore/share/estore/account/migrations \
    CATALOG_MIGRATIONS_DIR=/opt/estore/share/estore/catalog/migrations

# The services read an optional ./.env; this folder has none, so the
# environment alone configures a container.
WORKDIR /opt/estore
USER 10001:10001

# gRPC services: account 50051, token 50052, auth 50053, catalog 50054;
# the edge: 8080.
EXPOSE 8080 50051 50052 50053 50054
CMD ["estore-edge"]
