# The edge image: static binaries on an empty base, run as a non-root user.
# Build it with scripts/docker-build.sh, which compiles the binaries
# (CGO_ENABLED=0) into bin/docker/ first; this file only copies them.
#
#   docker run --rm --network host edge:dev            # the embedded default config
#   docker run --rm -v "$PWD/configs:/etc/edge:ro" -p 8443:8443 edge:dev run -c /etc/edge/my.yaml
#
# The embedded default config listens on 127.0.0.1 only, so from outside the
# container it is reachable with --network host; a config of your own that
# listens on 0.0.0.0 works with -p.
FROM scratch

COPY bin/docker/rootfs/ /
COPY --chown=65532:65532 bin/docker/state/ /var/lib/edge/

# ACME accounts and certificates go to $XDG_DATA_HOME/edge/acme unless a
# config names its storage: mount a volume on /var/lib/edge to keep them.
ENV XDG_DATA_HOME=/var/lib/edge
USER 65532:65532
WORKDIR /var/lib/edge
EXPOSE 8080 8443 9901
ENTRYPOINT ["/usr/local/bin/edge"]
CMD ["run"]
