# syntax=docker/dockerfile:1
# A small non-root image: the release binary on distroless (glibc, CA certificates, no shell).
#   docker build -t ferrotel/ferrotel:0.1.0 .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN scripts/build-release.sh

FROM gcr.io/distroless/cc-debian12
COPY --from=build /src/target/release/ferrotel /usr/local/bin/ferrotel
COPY pipelines/agent.yaml pipelines/gateway.yaml pipelines/local.yaml /etc/ferrotel/
USER 10001:10001
EXPOSE 4317 4318 13133 8888
ENTRYPOINT ["/usr/local/bin/ferrotel"]
CMD ["--config", "/etc/ferrotel/gateway.yaml"]
