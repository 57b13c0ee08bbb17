# Seeding helpers for loadtest/compare (sourced). Needs: $work, $storage (Distribution root),
# $static (nginx static root for manifests by tag), $lists, $lg (wharf-loadgen binary).
# Random bytes come from `openssl rand`, digests from `openssl dgst -sha256 -r`, and
# `wharf-loadgen layout` moves the files into Distribution's storage layout.

# gen_blobs REPO COUNT SIZE NAME
#   COUNT random blobs of SIZE bytes in REPO; writes $lists/NAME.digests ("sha256:HEX SIZE") and
#   $lists/NAME.paths ("/v2/REPO/blobs/sha256:HEX").
gen_blobs() {
  local repo=$1 count=$2 size=$3 name=$4
  local tmp="$work/gen/$name"
  mkdir -p "$tmp"
  if (( size <= 4194304 && count > 1 )); then
    openssl rand $((count * size)) | split -b "$size" -a 6 -d - "$tmp/f."
  else
    local i
    for ((i = 0; i < count; i++)); do openssl rand -out "$tmp/f.$i" "$size"; done
  fi
  (cd "$tmp" && find . -type f -printf '%f\n' | sort | xargs openssl dgst -sha256 -r) \
    | sed "s| \*| $tmp/|" | "$lg" layout --root "$storage" --repo "$repo" > "$lists/$name.digests"
  awk -v r="$repo" '{print "/v2/" r "/blobs/" $1}' "$lists/$name.digests" > "$lists/$name.paths"
  rmdir "$tmp"
  [ "$(wc -l < "$lists/$name.digests")" -eq "$count" ] || { echo "seed: $name: expected $count blobs" >&2; return 1; }
}

manifest_type=application/vnd.docker.distribution.manifest.v2+json
config_type=application/vnd.docker.container.image.v1+json
layer_type=application/vnd.docker.image.rootfs.diff.tar.gzip

# manifest_json CONFIG_DIGEST CONFIG_SIZE "DIGEST SIZE" … → a Docker schema2 image manifest.
manifest_json() {
  local cd=$1 cs=$2; shift 2
  local layers="" sep="" d s
  for entry in "$@"; do
    read -r d s <<<"$entry"
    layers+="$sep{\"mediaType\":\"$layer_type\",\"size\":$s,\"digest\":\"$d\"}"
    sep=","
  done
  printf '{"schemaVersion":2,"mediaType":"%s","config":{"mediaType":"%s","size":%s,"digest":"%s"},"layers":[%s]}' \
    "$manifest_type" "$config_type" "$cs" "$cd" "$layers"
}

# add_manifests REPO NAME: the files in $work/gen/NAME.m/ are manifests named by their tag; lays
# them out as tagged revisions of REPO, copies them for nginx's manifests-by-tag location, and
# writes $lists/NAME.tag.paths, $lists/NAME.digest.paths and $lists/NAME.images ("REPO:TAG").
add_manifests() {
  local repo=$1 name=$2
  local dir="$work/gen/$name.m"
  mkdir -p "$static/v2/$repo/manifests"
  cp "$dir"/* "$static/v2/$repo/manifests/"
  local tags=() t
  for t in "$dir"/*; do tags+=("$(basename "$t")"); done
  (cd "$dir" && openssl dgst -sha256 -r "${tags[@]}") | awk -v d="$dir" '{f=substr($2,2); print $1, d "/" f, f}' \
    | "$lg" layout --root "$storage" --repo "$repo" --kind manifest > "$lists/$name.mdigests"
  rmdir "$dir"
  printf '%s\n' "${tags[@]}" | awk -v r="$repo" '{print "/v2/" r "/manifests/" $1}' > "$lists/$name.tag.paths"
  awk -v r="$repo" '{print "/v2/" r "/manifests/" $1}' "$lists/$name.mdigests" > "$lists/$name.digest.paths"
  printf '%s\n' "${tags[@]}" | awk -v r="$repo" '{print r ":" $1}' > "$lists/$name.images"
}

# gen_manifests_over REPO NAME COUNT BLOBS_DIGESTS_FILE: COUNT tagged manifests (tags m-0…) whose
# config and 3 layers are existing blobs of REPO (for the manifest scenarios).
gen_manifests_over() {
  local repo=$1 name=$2 count=$3 digests=$4
  mkdir -p "$work/gen/$name.m"
  mapfile -t blobs < "$digests"
  local n=${#blobs[@]} i c
  for ((i = 0; i < count; i++)); do
    read -r cd cs <<<"${blobs[$(( (i * 4) % n ))]}"
    manifest_json "$cd" "$cs" "${blobs[$(( (i * 4 + 1) % n ))]}" "${blobs[$(( (i * 4 + 2) % n ))]}" "${blobs[$(( (i * 4 + 3) % n ))]}" \
      > "$work/gen/$name.m/m-$i"
  done
  add_manifests "$repo" "$name"
}

# gen_images REPO NAME COUNT "LAYER_SIZE …": COUNT images (tags NAME-0…) with fresh random layers
# of the given sizes and a small JSON config each. Writes $lists/NAME.images (REPO:TAG per line)
# and $lists/NAME.all.paths (manifests by tag, configs, layers: what a pull fetches).
gen_images() {
  local repo=$1 name=$2 count=$3 sizes=($4)
  local i j tmp="$work/gen/$name.l" ctmp="$work/gen/$name.c"
  mkdir -p "$tmp" "$ctmp" "$work/gen/$name.m"
  for ((i = 0; i < count; i++)); do
    for ((j = 0; j < ${#sizes[@]}; j++)); do openssl rand -out "$tmp/$(printf 'i%04d.l%02d' "$i" "$j")" "${sizes[$j]}"; done
  done
  (cd "$tmp" && find . -type f -printf '%f\n' | sort | xargs openssl dgst -sha256 -r) \
    | sed "s| \*| $tmp/|" | "$lg" layout --root "$storage" --repo "$repo" > "$lists/$name.layers"
  rmdir "$tmp"
  mapfile -t layers < "$lists/$name.layers"
  local per=${#sizes[@]}
  for ((i = 0; i < count; i++)); do
    local diffids="" sep=""
    for ((j = 0; j < per; j++)); do diffids+="$sep\"${layers[$((i * per + j))]%% *}\""; sep=","; done
    printf '{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/bin"],"Labels":{"image":"%s-%d"}},"rootfs":{"type":"layers","diff_ids":[%s]},"created":"2024-01-01T00:00:00Z"}' \
      "$name" "$i" "$diffids" > "$ctmp/$(printf 'i%04d' "$i")"
  done
  (cd "$ctmp" && find . -type f -printf '%f\n' | sort | xargs openssl dgst -sha256 -r) \
    | sed "s| \*| $ctmp/|" | "$lg" layout --root "$storage" --repo "$repo" > "$lists/$name.configs"
  rmdir "$ctmp"
  mapfile -t configs < "$lists/$name.configs"
  for ((i = 0; i < count; i++)); do
    read -r cd cs <<<"${configs[$i]}"
    manifest_json "$cd" "$cs" "${layers[@]:$((i * per)):$per}" > "$work/gen/$name.m/$name-$i"
  done
  add_manifests "$repo" "$name"
  cat "$lists/$name.tag.paths" > "$lists/$name.all.paths"
  cat "$lists/$name.configs" "$lists/$name.layers" | awk -v r="$repo" '{print "/v2/" r "/blobs/" $1}' >> "$lists/$name.all.paths"
}
