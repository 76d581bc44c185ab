# One image for both sides of ebb: `ebb server` (the default command) and
# `ebb worker` (the chart's worker Deployments pass `worker ...` as args).
# A static binary on a distroless base, run as a non-root user.
#
# The build line below is the one the tests run (e2e/k8s parses it), so what
# they check (a static binary whose commands start) is what ships.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags="-s -w" -o /out/ebb ./cmd/ebb

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ebb /ebb
USER 65532:65532
EXPOSE 8080 9090 8081
ENTRYPOINT ["/ebb"]
CMD ["server"]
