#!/usr/bin/env bash
# Build one Dockerfile with rbuild and with BuildKit (the dockerd that
# ../shared/bench/peers.sh starts) and compare the results: every path of the
# final filesystem with its type, mode, owner, size and link target, and the
# image config fields a Dockerfile sets.
#
#   RBUILD=target/release/rbuild scripts/compare-with-buildkit.sh [CONTEXT]
#
# CONTEXT defaults to fixtures/Dockerfiles/compare. Exits non-zero on a difference.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
RBUILD=${RBUILD:-$here/target/release/rbuild}
ctx=$(cd "${1:-$here/fixtures/Dockerfiles/compare}" && pwd)
STATE=${BENCH_STATE:-/tmp/rbuild-bench}
"$here/../shared/bench/peers.sh" >/dev/null
export DOCKER_HOST=unix://$STATE/docker.sock DOCKER_BUILDKIT=1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$RBUILD" --root "$work/root" build -t compare-rbuild --output "type=docker,dest=$work/rbuild.tar" "$ctx" >/dev/null 2>"$work/rbuild.log" \
  || { cat "$work/rbuild.log"; exit 1; }
/usr/bin/docker build -q -t compare-buildkit "$ctx" >/dev/null
/usr/bin/docker save compare-buildkit -o "$work/buildkit.tar"

# Apply an image's layers in order into a directory (whiteouts honoured).
flatten() { # archive dest
  local src=$work/$(basename "$1" .tar)-x
  mkdir -p "$src" "$2"
  tar -xf "$1" -C "$src"
  python3 - "$src" "$2" <<'PY'
import json, os, shutil, sys, tarfile
src, dest = sys.argv[1], sys.argv[2]
manifest = json.load(open(os.path.join(src, "manifest.json")))[0]
for layer in manifest["Layers"]:
    with tarfile.open(os.path.join(src, layer)) as t:
        for m in t.getmembers():
            d, b = os.path.split(m.name)
            if b == ".wh..wh..opq":
                p = os.path.join(dest, d)
                for e in os.listdir(p) if os.path.isdir(p) else []:
                    q = os.path.join(p, e)
                    shutil.rmtree(q) if os.path.isdir(q) and not os.path.islink(q) else os.remove(q)
            elif b.startswith(".wh."):
                p = os.path.join(dest, d, b[4:])
                if os.path.isdir(p) and not os.path.islink(p): shutil.rmtree(p)
                elif os.path.lexists(p): os.remove(p)
            else:
                p = os.path.join(dest, m.name)
                if os.path.lexists(p) and not (m.isdir() and os.path.isdir(p)):
                    shutil.rmtree(p) if os.path.isdir(p) and not os.path.islink(p) else os.remove(p)
                t.extract(m, dest, numeric_owner=True)
print(json.dumps(json.load(open(os.path.join(src, manifest["Config"])))))
PY
}
listing() { (cd "$1" && find . -mindepth 1 -printf '%p %y %m %U:%G %s %l\n' | grep -v ' d ' | sort; \
             find . -mindepth 1 -type d -printf '%p %y %m %U:%G\n' | sort); }
config_fields() { python3 -c '
import json, sys
c = json.loads(sys.stdin.read())
cfg = c.get("config", {})
keys = ["Env", "Cmd", "Entrypoint", "WorkingDir", "User", "ExposedPorts", "Volumes", "Labels", "StopSignal", "Healthcheck", "Shell", "OnBuild"]
out = {k: cfg.get(k) for k in keys}
# History text differs between BuildKit versions (rbuild follows current
# BuildKit; Debian'"'"'s Docker 20.10 ships an older one), so compare the
# instruction and whether it made a layer.
out["history"] = [((h.get("created_by") or "").split(" ")[0], h.get("empty_layer", False)) for h in c.get("history", [])]
out["layers"] = len(c["rootfs"]["diff_ids"])
print(json.dumps(out, indent=1, sort_keys=True))'; }

flatten "$work/rbuild.tar" "$work/fs-rbuild" | config_fields > "$work/config-rbuild.json"
flatten "$work/buildkit.tar" "$work/fs-buildkit" | config_fields > "$work/config-buildkit.json"
listing "$work/fs-rbuild" > "$work/list-rbuild"
listing "$work/fs-buildkit" > "$work/list-buildkit"
status=0
diff -u "$work/list-buildkit" "$work/list-rbuild" || status=1
diff -u "$work/config-buildkit.json" "$work/config-rbuild.json" || status=1
((status)) && echo "DIFFERENT (left: BuildKit, right: rbuild)" || echo "same filesystem ($(wc -l < "$work/list-rbuild") entries) and config"
exit $status
