#!/usr/bin/env bash
# Builds the Docker tier's kernel image from Debian's packages and PyPI alone (no image registry):
# a debootstrapped Debian, a venv with ipykernel and gateway_provisioners' launcher, tini as PID 1.
# usage: kernel-image.sh WORKDIR TAG   (DOCKER_HOST names the engine; run as root)
set -euo pipefail
work=$1 tag=$2
rootfs="$work/rootfs" wheels="$work/wheels"
python=${PYTHON:-python3}
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
mirror=${mirror:-$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)}
rm -rf "$rootfs" && mkdir -p "$rootfs" "$wheels"
debootstrap --variant=minbase --include=python3,python3-venv,tini bookworm "$rootfs" "${mirror:-http://deb.debian.org/debian}" >"$work/debootstrap.log"
# The chroot cannot use pip online (no CA setup there): wheels are fetched here, installed offline there.
"$python" -m pip download --quiet --disable-pip-version-check --dest "$wheels" --only-binary=:all: \
  --implementation cp --python-version 3.11 --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
  ipykernel pycryptodomex gateway_provisioners 2>&1 | grep -v "is ignored" || true
mkdir -p "$rootfs/wheels" && cp "$wheels"/*.whl "$rootfs/wheels/"
chroot "$rootfs" /usr/bin/python3 -m venv /opt/kernel
chroot "$rootfs" /opt/kernel/bin/pip install --quiet --no-index --find-links /wheels ipykernel pycryptodomex gateway_provisioners
chroot "$rootfs" /opt/kernel/bin/jupyter-image-bootstrap install --languages Python >/dev/null 2>&1
chmod 0755 "$rootfs/usr/local/bin/bootstrap-kernel.sh"
chroot "$rootfs" useradd -u 1000 -g 100 -m jovyan
rm -rf "$rootfs/wheels" "$rootfs"/var/cache/apt/* "$rootfs"/var/lib/apt/lists/* "$rootfs/usr/share/doc" "$rootfs/usr/share/man"
tar -C "$rootfs" --numeric-owner -c . | /usr/bin/docker import \
  -c 'ENV PATH=/opt/kernel/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  -c 'ENV KERNEL_LANGUAGE=Python' -c 'WORKDIR /home/jovyan' \
  -c 'ENTRYPOINT ["/usr/bin/tini", "-g", "--"]' -c 'CMD ["/usr/local/bin/bootstrap-kernel.sh"]' \
  - "$tag" >/dev/null
rm -rf "$rootfs"
