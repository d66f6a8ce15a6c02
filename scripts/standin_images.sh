#!/usr/bin/env bash
# Stand-ins for the base images, made from Debian's own packages, for a machine that reaches
# Debian and PyPI but no container registry: the official Python image that the Dockerfile
# starts from, and Microsoft's devcontainer image that .devcontainer/Dockerfile starts from.
# An image already present, or one the engine can pull, is left alone. Debian 12's Python is
# 3.11, so this serves projects on Python 3.11 only.
#   ENGINE=podman bash scripts/standin_images.sh
set -euo pipefail
engine=${ENGINE:-podman}
version=$(cat "$(dirname "$0")/../.python-version")
serve_base=docker.io/library/python:${version}-slim-bookworm
dev_base=mcr.microsoft.com/devcontainers/python:1-${version}-bookworm

present() { $engine image exists "$1" 2>/dev/null || $engine pull --quiet "$1" >/dev/null 2>&1; }

# ca-certificates of this machine (a proxy's own among them) go in, so that pip and apt inside
# reach what this machine reaches; EXTERNALLY-MANAGED goes, as in the official image.
standin() { # name, packages, hook
	local tar
	tar=$(mktemp --suffix=.tar)
	mmdebstrap --quiet --variant=minbase \
		--include="ca-certificates,python3,python3-venv,python3-pip,python-is-python3,$2" \
		--customize-hook='rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED' \
		--customize-hook='cp /usr/local/share/ca-certificates/*.crt "$1"/usr/local/share/ca-certificates/ 2>/dev/null || true' \
		--customize-hook='chroot "$1" update-ca-certificates >/dev/null 2>&1' \
		--customize-hook="$3" bookworm "$tar"
	$engine import --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
		--change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
		--change 'CMD ["python3"]' "$tar" "$1" >/dev/null 2>&1
	rm -f "$tar"
	echo "made a stand-in for $1 from Debian's packages"
}

present "$serve_base" || standin "$serve_base" "" 'true'
# Microsoft's image: git, make and sudo, and the user `vscode` (uid 1000) with sudo rights.
present "$dev_base" || standin "$dev_base" "git,make,sudo" \
	'chroot "$1" useradd --create-home --uid 1000 --shell /bin/bash vscode && echo "vscode ALL=(root) NOPASSWD:ALL" > "$1"/etc/sudoers.d/vscode'
