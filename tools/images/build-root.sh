#!/usr/bin/env bash
# Builds the runtime filesystem of one of the project's images without Docker, exactly as its
# Dockerfile's final stage says, for the image tests (tests/images.rs):
#
#   tools/images/build-root.sh DOCKERFILE BINARY      prints the image directory, holding
#     root/          the image's filesystem (what `docker export` of the image would give)
#     image.json     the Dockerfile's ENV and ENTRYPOINT, and the root's size in bytes
#
# What goes in is read from the Dockerfile by tools/images/dockerfile.py: the final stage's base
# (debian:12-slim: `debootstrap --variant=minbase` of its suite with the slim variant's dpkg
# excludes, as debuerreotype builds it), its `apt-get install` packages (installed by apt-get
# inside the root), and its COPY --from=builder lines. The builder stage's layer is built by
# layer/build.sh inside a root of the same suite holding the builder's apt packages, as the
# builder stage does; the binary is BINARY (cargo's release build on this Debian 12 host, the
# same glibc as the image), put where the builder installs it.
#
# The machine's own apt mirror is used (tools/images/apt_mirror.py); no host name is written here.
# Each step is cached under $IMAGE_CACHE (default <repo>/.cache/images, outside git), keyed by a
# hash of everything it is made from, so repeated runs only copy the binary in. Runs hold a lock,
# so tests building both images side by side take turns.
set -euo pipefail
shopt -s inherit_errexit

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE=${IMAGE_CACHE:-$REPO/.cache/images}
ROOT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

log() { printf 'build-root: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
hash_of() { sha256sum | cut -c1-16; }

# in_root DIR COMMAND...: runs COMMAND chrooted in DIR with /dev and /proc, in a mount namespace
# of its own so nothing stays mounted if it fails, and with an environment of its own.
in_root() {
    local dir=$1
    shift
    # shellcheck disable=SC2016 # expanded by the inner shell
    unshare --mount --fork -- /bin/sh -ec '
        dir=$1; shift
        mount --rbind /dev "$dir/dev"
        mount -t proc proc "$dir/proc"
        exec chroot "$dir" "$@"' sh "$dir" \
        env -i PATH="$ROOT_PATH" HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive \
        ${PIP_INDEX_URL:+PIP_INDEX_URL="$PIP_INDEX_URL"} "$@"
}

# done_or_build KIND KEY FUNCTION: runs FUNCTION TMPDIR unless $CACHE/KIND-KEY is complete, then
# keeps the two most recently used entries of KIND (both images may need different ones).
done_or_build() {
    local kind=$1 key=$2 build=$3 dir=$CACHE/$1-$2
    if [[ ! -e $dir/.complete ]]; then
        log "building $kind $key"
        rm -rf "$dir" "$dir.tmp"
        mkdir -p "$dir.tmp"
        "$build" "$dir.tmp"
        touch "$dir.tmp/.complete"
        mv "$dir.tmp" "$dir"
    fi
    touch "$dir/.complete"
    # shellcheck disable=SC2010 # names are ours: <kind>-<hex>, newest first
    ls -1dt "$CACHE/$kind"-* | grep -v '\.tmp$' | tail -n +3 | xargs -r rm -rf
    printf '%s' "$dir"
}

# The suite of a Debian image tag this script knows how to build.
suite_of() {
    case $1 in
        debian:12-slim | rust:*-bookworm) echo bookworm ;;
        *) die "no recipe for base image $1: teach tools/images/build-root.sh" ;;
    esac
}

build_base() {
    local dir=$1
    debootstrap_root "$dir"
    # debian:12-slim's dpkg excludes (debuerreotype's .slimify-excludes/-includes), so packages
    # installed later leave out docs, man pages and translations as they do in the image.
    cat >"$dir/etc/dpkg/dpkg.cfg.d/docker" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/man/*
CFG
    find "$dir/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    find "$dir/usr/share/locale" -mindepth 1 -not -name locale.alias -not -type d -delete
    rm -rf "$dir"/usr/share/{groff,info,linda,man}/*
    # debootstrap keeps the packages it downloaded and the indexes; the image ships neither.
    rm -rf "$dir"/var/cache/apt/*.bin "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
    rm -f "$dir"/etc/apt/sources.list
    "$HERE/apt_mirror.py" sources "$SUITE" >"$dir/etc/apt/sources.list.d/debian.sources"
    # A container image has an empty /dev: the runtime (Docker, Lambda, the tests) provides one.
    find "$dir/dev" -mindepth 1 -delete
}

debootstrap_root() {
    command -v debootstrap >/dev/null || die "debootstrap is missing: run \`make deps\`"
    unshare --mount --fork -- debootstrap --variant=minbase "$SUITE" "$1" "$MIRROR" >&2 ||
        die "debootstrap failed; its log is $1/debootstrap/debootstrap.log"
}

apt_install() {
    local dir=$1
    shift
    cp /etc/resolv.conf "$dir/etc/resolv.conf"
    in_root "$dir" apt-get update -qq
    in_root "$dir" apt-get install -y -qq --no-install-recommends "$@" >&2
    rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*.bin "$dir"/var/cache/apt/archives/*.deb
}

build_builder() {
    local dir=$1
    cp -a "$BASE/." "$dir/"
    rm -f "$dir/.complete"
    # shellcheck disable=SC2046 # one word per package
    apt_install "$dir" $(jq_ '.builder.apt[]')
    mkdir -p "$dir/src"
    cp -a "$REPO/layer" "$dir/src/layer"
    rm -rf "$dir/src/layer/out"
    # pip inside the root reaches the registry as this machine does: its pip.conf, and its CA
    # bundle (a machine behind a TLS-inspecting proxy trusts a CA the Debian bundle lacks).
    if [[ -e /etc/pip.conf ]]; then cp /etc/pip.conf "$dir/etc/pip.conf"; fi
    cp /etc/ssl/certs/ca-certificates.crt "$dir/etc/ssl/certs/ca-certificates.crt"
    # The builder image has cargo; this root does not: the isolation library is built on this
    # host (the same Debian 12 and glibc) and handed to build.sh, which installs it.
    CARGO_TARGET_DIR="$REPO/target/isolate" cargo build --quiet --release --locked \
        --manifest-path "$REPO/Cargo.toml" -p pyexec-isolate >&2
    # The supervisor without a C library, as layer/build.sh builds it.
    CARGO_TARGET_DIR="$REPO/target/isolate" cargo rustc --quiet --release --locked \
        --manifest-path "$REPO/Cargo.toml" -p pyexec-isolate --bin pyexec-supervise \
        -- $(cat "$REPO/layer/isolate/supervise.flags") >&2
    install -m 0644 "$REPO/target/isolate/release/libpyexec_isolate.so" "$dir/src/libpyexec_isolate.so"
    install -m 0755 "$REPO/target/isolate/release/pyexec-supervise" "$dir/src/pyexec-supervise"
    in_root "$dir" env ISOLATE_LIB=/src/libpyexec_isolate.so /src/layer/build.sh "$LAYER_DIR" >&2
}

build_stage() {
    local dir=$1 src dest
    cp -a "$BASE/." "$dir/"
    rm -f "$dir/.complete"
    # shellcheck disable=SC2046 # one word per package
    apt_install "$dir" $(jq_ '.final.apt[]')
    rm -f "$dir/etc/resolv.conf"
    while read -r src dest; do
        case $src in
            "$LAYER_DIR" | "$LAYER_DIR/")
                mkdir -p "$dir$dest"
                cp -a "$BUILDER$LAYER_DIR/." "$dir$dest/"
                rm -f "$dir$dest/.layer-stamp" ;;
            "$BINARY_DEST") ;; # put in per binary below: it changes far more often
            *) die "the final stage copies $src from the builder; no recipe makes it here" ;;
        esac
    done < <(jq_ '.final.copies[] | "\(.src) \(.dest)"')
}

build_image() {
    local dir=$1 dest
    # Hard links: the image shares the stage's files, and only the binary is new.
    mkdir "$dir/root"
    cp -al "$STAGE/." "$dir/root/"
    rm -f "$dir/root/.complete"
    # shellcheck disable=SC2016 # jq variables
    dest=$(jq_ --arg b "$BINARY_DEST" '.final.copies[] | select(.src == $b) | .dest')
    [[ -n $dest ]] || die "the final stage does not copy the binary ($BINARY_DEST)"
    install -D -m 0755 "$BINARY" "$dir/root$dest"
    # shellcheck disable=SC2016 # jq variables
    jq_ --argjson size "$(du -s -B1 --apparent-size "$dir/root" | cut -f1)" \
        '{env: .final.env, entrypoint: .final.entrypoint, size_bytes: $size}' >"$dir/image.json"
}

# jq_ [OPTIONS] FILTER: a query of the Dockerfile's spec.
jq_() { jq -r "$@" "$SPEC"; }

main() {
    [[ $# -eq 2 ]] || die "usage: build-root.sh DOCKERFILE BINARY"
    [[ $(id -u) -eq 0 ]] || die "needs root (debootstrap, chroot)"
    local dockerfile=$1
    BINARY=$(readlink -f "$2")
    [[ -x $BINARY ]] || die "$2 is not a built binary: run \`make build\`"
    mkdir -p "$CACHE"
    exec 9>"$CACHE/.lock"
    flock 9
    SPEC=$(mktemp)
    trap 'rm -f "$SPEC"' EXIT
    "$HERE/dockerfile.py" "$dockerfile" >"$SPEC"
    SUITE=$(suite_of "$(jq_ '.final.image')")
    [[ $(suite_of "$(jq_ '.builder.image')") == "$SUITE" ]] || die "builder and runtime differ in suite"
    MIRROR=$("$HERE/apt_mirror.py" mirror "$SUITE")
    LAYER_DIR=$(jq_ '.builder.layer_dir')
    BINARY_DEST=$(jq_ '.builder.binary')
    local me layer base_key builder_key stage_key
    me=$(cat "$HERE/build-root.sh" "$HERE/dockerfile.py" "$HERE/apt_mirror.py" | hash_of)
    layer=$(find "$REPO/layer" -path "$REPO/layer/out" -prune -o -type f -print0 | sort -z |
        xargs -0 cat | hash_of)
    base_key=$(echo "$me $SUITE $MIRROR" | hash_of)
    BASE=$(done_or_build base "$base_key" build_base)
    builder_key=$(echo "$base_key $layer $(jq_ -c '.builder')" | hash_of)
    BUILDER=$(done_or_build builder "$builder_key" build_builder)
    stage_key=$(echo "$builder_key $(jq_ -c '.final.apt, .final.copies')" | hash_of)
    STAGE=$(done_or_build stage "$stage_key" build_stage)
    local name image_key
    name=$(basename "$dockerfile" | tr -c 'A-Za-z0-9\n' -)
    image_key=$(echo "$stage_key $(jq_ -c '.final') $(hash_of <"$BINARY")" | hash_of)
    done_or_build "image-$name" "$image_key" build_image
    echo
}

main "$@"
