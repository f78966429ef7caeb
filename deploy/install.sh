#!/bin/sh
# Install or upgrade roadside from this offline bundle (no network needed): one command, as root:
#   sudo ./install.sh                 # product in /opt/roadside/venv, configuration /etc/roadside, state /var/lib/roadside
# Elsewhere (a test, a user install):
#   PREFIX=$HOME/roadside ETC=$HOME/roadside/etc STATE=$HOME/roadside/state ./install.sh --no-systemd
# An upgrade replaces the product and adds the bundle's models; it keeps the box's configuration (a bundle's
# different configuration is put beside it as edge.yaml.bundle) and never touches the state directory's outbox.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
PREFIX=${PREFIX:-/opt/roadside}
ETC=${ETC:-/etc/roadside}
STATE=${STATE:-/var/lib/roadside}
PYTHON=${PYTHON:-python3}
SYSTEMD=yes
for arg in "$@"; do
  case "$arg" in
    --no-systemd) SYSTEMD=no ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $arg (--no-systemd, --help)" >&2; exit 2 ;;
  esac
done
say() { echo "install.sh: $*"; }
fail() { echo "install.sh: error: $*" >&2; exit 1; }

# 1. the models must be intact before anything changes
( cd "$HERE/models" && sha256sum --quiet -c SHA256SUMS ) || fail "a model in $HERE/models does not match models/SHA256SUMS (a damaged copy?); nothing was changed"

# 2. the product: a fresh virtual environment from the bundle's wheels only
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || fail "$PYTHON is older than Python 3.11"
WHEEL=$(ls "$HERE"/wheels/roadside-*.whl | tail -n 1)
mkdir -p "$PREFIX"
NEW="$PREFIX/venv-$(date +%Y%m%d%H%M%S)-$$"
"$PYTHON" -m venv "$NEW"
"$NEW/bin/pip" install -q --no-index --find-links "$HERE/wheels" "$WHEEL" || { rm -rf "$NEW"; fail "pip could not install from $HERE/wheels (built for another platform or Python?); the installed version is unchanged"; }
"$NEW/bin/roadside" --help >/dev/null || { rm -rf "$NEW"; fail "the new installation does not run; the installed version is unchanged"; }
# switch $PREFIX/venv (a symbolic link) to the new one at once; keep the previous one for a rollback
OLD=""
if [ -L "$PREFIX/venv" ]; then OLD=$(readlink "$PREFIX/venv"); elif [ -d "$PREFIX/venv" ]; then mv "$PREFIX/venv" "$PREFIX/venv-old"; OLD=venv-old; fi
ln -sfn "$(basename "$NEW")" "$PREFIX/venv.link" && mv -T "$PREFIX/venv.link" "$PREFIX/venv"
for d in "$PREFIX"/venv-*; do
  case "$(basename "$d")" in "$(basename "$NEW")"|"$OLD") ;; *) rm -rf "$d" ;; esac
done
[ -n "$OLD" ] && say "upgraded; the previous installation stays in $PREFIX/$OLD (rollback: ln -sfn $OLD $PREFIX/venv)"
say "installed $("$PREFIX/venv/bin/python" -c 'import importlib.metadata as m; print("roadside", m.version("roadside"))') in $PREFIX/venv"

# 3. configuration: kept on an upgrade
mkdir -p "$ETC"
for f in "$HERE"/config/*.yaml; do
  name=$(basename "$f")
  if [ ! -e "$ETC/$name" ]; then
    cp "$f" "$ETC/$name"; say "configuration $ETC/$name installed"
  elif ! cmp -s "$f" "$ETC/$name"; then
    cp "$f" "$ETC/$name.bundle"; say "configuration $ETC/$name kept (the bundle's is beside it: $name.bundle)"
  fi
done

# 4. models into the box's store (verified against the product's manifest by roadside models fetch)
mkdir -p "$STATE"
for m in $(sed -n 's/^[0-9a-f]*  \(.*\)\.onnx$/\1/p' "$HERE/models/SHA256SUMS"); do
  ROADSIDE_HOME="$STATE" "$PREFIX/venv/bin/roadside" models fetch "$m" --from "$HERE/models" >/dev/null
  say "model $m in $STATE/models"
done

# 5. the services (systemd boxes)
if [ "$SYSTEMD" = yes ] && command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  install -m 0644 "$HERE/systemd/roadside.sysusers.conf" /usr/lib/sysusers.d/roadside.conf
  systemd-sysusers /usr/lib/sysusers.d/roadside.conf
  chown -R roadside:roadside "$STATE"
  install -m 0644 "$HERE"/systemd/roadside-*.service /etc/systemd/system/
  systemctl daemon-reload
  systemctl enable roadside-edge.service >/dev/null
  systemctl restart roadside-edge.service
  [ -e "$ETC/controller.yaml" ] && { systemctl enable roadside-controller.service >/dev/null; systemctl restart roadside-controller.service; }
  say "services enabled and (re)started: journalctl -u roadside-edge -f"
else
  say "systemd not used; start it with: ROADSIDE_HOME=$STATE $PREFIX/venv/bin/roadside edge run --config $ETC/edge.yaml"
fi
